"""Fault injection for the SQLite writer process: a wrapper script that runs the real
writer (store/sqlite/writer.py) with one moment made fatal, armed by a file.

`faulty_writer(tmp_path, moment)` writes the wrapper and returns it with its trigger
file; point `store.sqlite.process.WRITER` at the wrapper, create the trigger when the
next occurrence of `moment` should kill the process (SIGKILL, as the kernel's OOM killer
would), and the writer dies exactly there, once:

- "after_commit": the batch is committed, the reply not yet written;
- "on_resume": a ("resume",) message was read, not yet answered;
- "on_start": the process exits before opening the database, for as long as the trigger
  file exists (a writer that cannot start).
"""

from __future__ import annotations

from pathlib import Path

from jobtrail.store.sqlite import process

_WRAPPER = """
import os, signal, sys
sys.path.insert(0, {folder!r})
import writer

TRIGGER, MOMENT = {trigger!r}, {moment!r}


def fire():
    if os.path.exists(TRIGGER):
        if MOMENT != "on_start":
            os.unlink(TRIGGER)
        os.kill(os.getpid(), signal.SIGKILL)


real_write, real_read = writer.Writer.write, writer.read_frame


def write(self, batch):
    written = real_write(self, batch)
    if MOMENT == "after_commit":
        fire()
    return written


def read_frame(stream):
    message = real_read(stream)
    if MOMENT == "on_resume" and message is not None and message[0] == "resume":
        fire()
    return message


writer.Writer.write, writer.read_frame = write, read_frame
if MOMENT == "on_start":
    fire()
sys.exit(writer.main(sys.argv[1:]))
"""


def faulty_writer(folder: Path, moment: str) -> tuple[Path, Path]:
    """(the wrapper script, its trigger file: create it to arm the fault)."""
    trigger = folder / f"kill-{moment}"
    script = folder / f"writer_{moment}.py"
    script.write_text(_WRAPPER.format(folder=str(process.WRITER.parent), trigger=str(trigger), moment=moment))
    return script, trigger
