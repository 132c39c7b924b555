"""`cluster down --local` bookkeeping without Ray: only the recorded sessions' processes are stopped."""

import subprocess
import time

from runtime.sessions import recorded_script, session_processes, state_path, stop_recorded


def test_stop_recorded_stops_its_sessions_children_included_and_nothing_else(tmp_path):
    state = state_path(tmp_path, 7001)
    # a recorded session that leaves a daemon behind (as `ray start` does), with a child of its own
    subprocess.run(["bash", "-c", recorded_script("(sleep 300 & sleep 301) >/dev/null 2>&1 &", state)], check=True, timeout=30)
    stranger = subprocess.Popen(["sleep", "302"], start_new_session=True)
    sessions = {int(x) for x in state.read_text().split()}
    for _ in range(50):
        if len(session_processes(sessions)) >= 2:
            break
        time.sleep(0.1)
    assert len(session_processes(sessions)) >= 2
    lines = stop_recorded(tmp_path, grace_s=5)
    assert len(lines) == 1 and "port 7001" in lines[0]
    assert session_processes(sessions) == []
    assert not state.exists()
    assert stranger.poll() is None, "a process outside the recorded sessions was stopped"
    stranger.kill()
    assert stop_recorded(tmp_path) == []  # nothing recorded: nothing done
