"""Console output made printable.

Firmware, boot loaders and systemd write raw control characters and ANSI/VT100 sequences to the
console (clear screen, cursor moves, colours, window titles). `Sanitizer` turns that into plain
text that is safe to print on any terminal and in files.
"""

from __future__ import annotations

import codecs
import functools
import re


@functools.cache
def compiled(pattern: str) -> re.Pattern[str]:
    # Compiled on first use: `list` imports the console modules but rarely reads a log.
    return re.compile(pattern)


# Plain text up to and including its line end: most of a console log, handled in one step.
_PLAIN_RUN = r"[^\x00-\x1f\x7f-\x9f]*(?:\r*\n)?"
_MAX_SEQUENCE = 64  # a CSI longer than this is garbage, not a sequence: give the text back
_MAX_STRING = 4096  # OSC/DCS payloads (window titles, …)

_NORMAL, _ESC, _CSI, _STRING, _STRING_ESC, _ESC_INTERMEDIATE = range(6)


class Sanitizer:
    """Streaming bytes -> printable text. Feed it chunks as they arrive; sequences split across
    chunks are handled. What comes out contains no control character except newline and tab:

    * CR LF and lone CR become one newline (UEFI writes CR LF; progress output overwrites lines);
    * cursor positioning and screen clears (GRUB's and the firmware's menus) become a line break,
      so text drawn at different places does not run together;
    * every other escape sequence (colours, modes, titles, charsets) and control character is
      dropped, as are C1 controls; invalid UTF-8 becomes U+FFFD.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._plain_run = compiled(_PLAIN_RUN)
        self._state = _NORMAL
        self._sequence: list[str] = []
        self._pending_cr = False
        self._at_line_start = True

    def feed(self, data: bytes) -> str:
        return self._process(self._decoder.decode(data))

    def flush(self) -> str:
        """End of input: whatever is held back (a lone CR, an unfinished sequence) is settled."""
        text = self._process(self._decoder.decode(b"", final=True))
        if self._pending_cr:
            self._pending_cr = False
            self._at_line_start = True
            text += "\n"
        self._state = _NORMAL
        self._sequence = []
        return text

    def _process(self, text: str) -> str:
        out: list[str] = []
        index = 0
        length = len(text)
        while index < length:
            if self._state == _NORMAL and not self._pending_cr:
                match = self._plain_run.match(text, index)
                if match is not None and match.end() > index:
                    run = match.group()
                    if run[-1] == "\n":
                        out.append(run.rstrip("\r\n") + "\n")
                        self._at_line_start = True
                    else:
                        out.append(run)
                        self._at_line_start = False
                    index = match.end()
                    continue
            self._char(text[index], out)
            index += 1
        return "".join(out)

    def _newline(self, out: list[str]) -> None:
        out.append("\n")
        self._at_line_start = True

    def _char(self, char: str, out: list[str]) -> None:
        state = self._state
        code = ord(char)
        if state == _NORMAL:
            if self._pending_cr:
                self._pending_cr = False
                if char == "\r":
                    self._pending_cr = True
                    return
                self._newline(out)
                if char == "\n":
                    return
            if char == "\n":
                self._newline(out)
            elif char == "\r":
                self._pending_cr = True
            elif char == "\t":
                out.append(char)
                self._at_line_start = False
            elif char == "\x1b":
                self._state = _ESC
            elif code < 0x20 or 0x7F <= code <= 0x9F:
                pass  # BEL, BS, SO/SI, NUL, DEL, C1 controls: nothing a log reader wants
            else:
                out.append(char)
                self._at_line_start = False
        elif state == _ESC:
            if char == "[":
                self._state = _CSI
                self._sequence = []
            elif char in "]PX^_":
                self._state = _STRING
                self._sequence = []
            elif 0x20 <= code <= 0x2F:
                self._state = _ESC_INTERMEDIATE
            elif 0x30 <= code <= 0x7E:
                self._state = _NORMAL  # a two-character sequence (ESC 7, ESC c, ESC =, …)
            elif char == "\x1b":
                pass
            else:
                self._state = _NORMAL
                self._char(char, out)
        elif state == _CSI:
            if 0x20 <= code <= 0x3F and len(self._sequence) < _MAX_SEQUENCE:
                self._sequence.append(char)
            elif 0x40 <= code <= 0x7E:
                self._state = _NORMAL
                if char in "HfJ" and not self._at_line_start:
                    self._newline(out)
            else:
                # Not a CSI after all: drop the introducer, keep the rest as text.
                self._state = _NORMAL
                for held in self._sequence:
                    self._char(held, out)
                self._sequence = []
                self._char(char, out)
        elif state == _STRING:
            if char == "\x07":
                self._state = _NORMAL
            elif char == "\x1b":
                self._state = _STRING_ESC
            elif len(self._sequence) >= _MAX_STRING:
                self._state = _NORMAL
            else:
                self._sequence.append(char)
        elif state == _STRING_ESC:
            # ESC \ ends the string; any other ESC x also ends it (and x starts over).
            self._state = _NORMAL
            if char != "\\":
                self._state = _ESC
                self._char(char, out)
        elif state == _ESC_INTERMEDIATE:
            if 0x20 <= code <= 0x2F:
                pass
            else:
                self._state = _NORMAL
                if not 0x30 <= code <= 0x7E:
                    self._char(char, out)


def sanitize(data: bytes) -> str:
    sanitizer = Sanitizer()
    return sanitizer.feed(data) + sanitizer.flush()
