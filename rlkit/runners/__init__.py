"""Loops that an algorithm owns (``register_runners``): A3C's asynchronous workers, as
processes on this machine or as Ray actors. They supervise through
:meth:`rlkit.loop.Trainer.driven_loop`, which keeps logging, evaluation, checkpoints and
signals the same for every run."""
