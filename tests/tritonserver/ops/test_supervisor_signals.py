"""The stop handler of ``moe-ids serve``'s supervisor when a second SIGTERM lands while the first one's handler
runs (a wrapper such as ``timeout`` relaying the signal its caller also sent to the process group): it must not
deadlock, or the command hangs with tritonserver still running."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Runs in a process of its own: it signals itself. A trace function raises SIGTERM at every line the first
# handler executes, however deep (the lines of any lock it takes included), so the nested handler runs at each
# point where the kernel could have delivered the second signal.
NESTED = textwrap.dedent("""
    import signal, sys
    from moe_ids.triton.ops.supervisor import Supervisor

    class Server:
        pid = None
        def running(self): return True
        def stop(self, grace=0.0): pass

    supervisor = Supervisor(Server(), poll_s=0.05, log=lambda _msg: None)
    supervisor.install_signal_handlers()
    handler = signal.getsignal(signal.SIGTERM)
    raised = []

    def second_signal_everywhere(frame, event, arg):
        if event == "line" and len(raised) < 50:
            raised.append(frame.f_code.co_name)
            signal.raise_signal(signal.SIGTERM)
        return second_signal_everywhere

    def first_handler(signum, frame):
        signal.signal(signal.SIGTERM, handler)  # the nested signals reach the supervisor's own handler
        sys.settrace(second_signal_everywhere)
        try:
            handler(signum, frame)
        finally:
            sys.settrace(None)

    signal.signal(signal.SIGTERM, first_handler)
    signal.raise_signal(signal.SIGTERM)
    print("stop requested", supervisor.stopping, "nested signals", len(raised) > 0, flush=True)
""")


def test_a_second_stop_signal_inside_the_first_handler_does_not_deadlock() -> None:
    proc = subprocess.Popen([sys.executable, "-c", NESTED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # deadlocked: its own SIGTERM handler can never run, so only SIGKILL ends it
        proc.communicate()
        raise AssertionError("the stop handler deadlocked when a second signal arrived inside it") from None
    assert proc.returncode == 0, err[-2000:]
    assert out.split() == ["stop", "requested", "True", "nested", "signals", "True"]
