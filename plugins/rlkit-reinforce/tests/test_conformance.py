"""rlkit's conformance checks on the ``reinforce`` algorithm this package registers.

Needs the package installed (``pip install -e plugins/rlkit-reinforce``) so that rlkit finds
its entry point.
"""

from rlkit.plugins import Plugins
from rlkit.testing import check_algorithm


def test_reinforce_is_discovered_through_its_entry_point():
    plugins = Plugins.load()
    assert "reinforce" in plugins.algorithms, "is rlkit-reinforce installed (pip install -e .)?"
    _, provider = plugins.algorithms["reinforce"]
    assert provider.distribution == "rlkit-reinforce"


def test_reinforce_conforms(tmp_path):
    # smoke run, save/load with weights_only=True, same-seed determinism, exact resume
    check_algorithm("reinforce", env_id="CartPole-v1", params={"n_steps": 16},
                    workdir=tmp_path, steps=256)
