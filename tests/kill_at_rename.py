"""Run a stage script and SIGKILL it just before its N-th rename (os.rename / os.replace), the
moment an atomic write has put everything in its temporary path but not yet under the output's
name:  python kill_at_rename.py N script.py [args]"""

import os
import runpy
import signal
import sys

count, script = int(sys.argv[1]), sys.argv[2]
renames = 0


def hook(event: str, args: tuple) -> None:
    global renames
    if event == "os.rename":  # raised by os.rename and os.replace, before they act
        renames += 1
        if renames == count:
            print(f"killing before rename {args[0]} -> {args[1]}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


sys.addaudithook(hook)
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
