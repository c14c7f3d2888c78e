"""Qt key events as X keysyms, the layout-independent key names the protocol carries.

On X11 (the xcb platform) Qt already knows the keysym: `QKeyEvent.nativeVirtualKey()`. Elsewhere
(offscreen, Wayland, other systems) the keysym is rebuilt from `Qt.Key` for keys that have no
text, and from the text for the others (X11 keysym encoding: Latin-1 characters are their own
keysym, every other Unicode character is 0x01000000 + its code point; see the X11 protocol's
appendix A, "KEYSYM Encoding").
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QGuiApplication, QKeyEvent

__all__ = ["keysym", "keysym_for_key"]

K = Qt.Key
# From X11/keysymdef.h.
_SPECIAL: dict[Qt.Key, int] = {
    K.Key_Escape: 0xFF1B, K.Key_Tab: 0xFF09, K.Key_Backtab: 0xFE20, K.Key_Backspace: 0xFF08,
    K.Key_Return: 0xFF0D, K.Key_Enter: 0xFF8D, K.Key_Insert: 0xFF63, K.Key_Delete: 0xFFFF,
    K.Key_Pause: 0xFF13, K.Key_Print: 0xFF61, K.Key_SysReq: 0xFF15, K.Key_Clear: 0xFF0B,
    K.Key_Home: 0xFF50, K.Key_End: 0xFF57, K.Key_Left: 0xFF51, K.Key_Up: 0xFF52,
    K.Key_Right: 0xFF53, K.Key_Down: 0xFF54, K.Key_PageUp: 0xFF55, K.Key_PageDown: 0xFF56,
    K.Key_Shift: 0xFFE1, K.Key_Control: 0xFFE3, K.Key_Meta: 0xFFEB, K.Key_Alt: 0xFFE9,
    K.Key_AltGr: 0xFE03, K.Key_CapsLock: 0xFFE5, K.Key_NumLock: 0xFF7F,
    K.Key_ScrollLock: 0xFF14, K.Key_Super_L: 0xFFEB, K.Key_Super_R: 0xFFEC,
    K.Key_Menu: 0xFF67, K.Key_Hyper_L: 0xFFED, K.Key_Hyper_R: 0xFFEE, K.Key_Help: 0xFF6A,
    K.Key_Space: 0x0020,
}
# F1..F35 are consecutive in both Qt and X11.
_SPECIAL.update({K(K.Key_F1.value + i): 0xFFBE + i for i in range(35)})


def keysym_for_key(key: int, text: str) -> int:
    """The keysym for a Qt key code and the text it typed; 0 when there is none."""
    try:
        special = _SPECIAL.get(Qt.Key(key))
    except ValueError:
        special = None
    if special is not None:
        return special
    if len(text) == 1 and text.isprintable():
        code = ord(text)
        return code if 0x20 <= code <= 0xFF else 0x01000000 + code
    # Without text (a letter with Ctrl held, say) Qt's key code for letters and digits is
    # the upper-case ASCII code; X names the unshifted key by its lower-case keysym.
    if 0x20 <= key <= 0x7E:
        return ord(chr(key).lower())
    if 0xA0 <= key <= 0xFF:
        return key
    return 0


def keysym(event: QKeyEvent) -> int:
    """The X keysym of a key event; 0 when it has none (it is then not sent)."""
    if QGuiApplication.platformName() == "xcb" and event.nativeVirtualKey():
        return int(event.nativeVirtualKey())
    return keysym_for_key(event.key(), event.text())
