"""rlkit's conformance checks on the ``reinforce`` algorithm this package registers.

Needs the package installed (``pip install -e plugins/rlkit-reinforce``) so that rlkit finds
its entry point.
"""

from rlkit.plugins import Plugins
from rlkit.testing import check_algorithm, shifted_actions_env


def test_reinforce_is_discovered_through_its_entry_point():
    plugins = Plugins.load()
    assert "reinforce" in plugins.algorithms, "is rlkit-reinforce installed (pip install -e .)?"
    _, provider = plugins.algorithms["reinforce"]
    assert provider.distribution == "rlkit-reinforce"


def test_reinforce_conforms(tmp_path):
    # smoke run, save/load with weights_only=True, same-seed determinism, exact resume
    check_algorithm("reinforce", env_id="CartPole-v1", params={"n_steps": 16},
                    workdir=tmp_path, steps=256)


def test_reinforce_handles_a_discrete_space_that_starts_at_minus_one(tmp_path):
    # Acrobot with Discrete(3, start=-1) actions: sent as index - 1, learned from as indices
    check_algorithm("reinforce", env_id="Acrobot-v1", env=shifted_actions_env(-1),
                    params={"n_steps": 16}, workdir=tmp_path, steps=128)
