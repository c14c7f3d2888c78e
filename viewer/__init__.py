"""The PyQt6 programs: the expert's viewer and the novice's panel. Only this package uses Qt."""

import os

# Qt's own event dispatcher rather than GLib's, set before any QApplication exists: on GLib's,
# asyncio's timers on Qt's loop (qasync) were seen to stop firing for good after a session with
# control ended (the test suite hung in about half of its runs; with this, in none of three).
os.environ.setdefault("QT_NO_GLIB", "1")
