"""A plain-text progress bar (no tqdm dependency): redrawn in place on a terminal, one line otherwise."""

import sys
import time


class ProgressBar:
    def __init__(self, total, label, stream=sys.stdout, width=30):
        self.total, self.label, self.stream, self.width = total, label, stream, width
        self.interactive = stream.isatty()  # logs and CI get only the final line, not every redraw
        self.start = time.perf_counter()

    def _line(self, done, suffix):
        filled = self.width * done // self.total
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {done}/{self.total} {elapsed:5.1f}s {suffix}"

    def update(self, done, suffix=""):
        if self.interactive:
            self.stream.write("\r" + self._line(done, suffix))
            self.stream.flush()

    def close(self, suffix=""):
        self.stream.write(("\r" if self.interactive else "") + self._line(self.total, suffix) + "\n")
        self.stream.flush()
