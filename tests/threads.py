"""Run a function in several threads at once and re-raise what any of them raised."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(
    work: Callable[[int], None], n_threads: int, during: Callable[[], None] | None = None
) -> None:
    """Call ``work(0) ... work(n_threads - 1)``, each in its own thread, released together.

    ``during``, when given, is called over and over in this thread while the others run (e.g.
    to change a setting under them). The first exception any thread raised is raised here.
    """
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads + (during is not None))

    def run(t: int) -> None:
        try:
            barrier.wait()
            work(t)
        except BaseException as exc:  # reported in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    if during is not None:
        barrier.wait()
        while any(th.is_alive() for th in threads):
            during()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
