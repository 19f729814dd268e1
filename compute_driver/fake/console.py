#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""The fake backend's serial console: a tiny line-oriented shell.

It behaves like a serial port with a shell on it, as the real backends'
test guests have: what is typed is echoed, and each line that ends with a
carriage return is answered and written to the console log. ``echo
WORDS`` prints the words back, which is enough for a caller to check
that input reaches the guest and output comes back; anything else is
answered ``sh: NAME: not found``. One session at a time, as a serial port.
"""

import typing

from compute_driver import console

#: The prompt the fake shell prints.
PROMPT = b'# '


class FakeTerminal:
    """A line discipline and a shell in front of one fake instance.

    :param log: called with each line typed, for the console log.
    :param on_close: called when the session ends.
    """

    def __init__(self, log: typing.Callable[[str], object],
                 on_close: typing.Callable[[], object]) -> None:
        self._log = log
        self._line = bytearray()
        self.stream = console.QueueStream(self._receive, on_close=on_close)
        self.stream.feed(b'\r\n' + PROMPT)

    def _answer(self, line: str) -> bytes:
        words = line.split()
        if not words:
            return b''
        if words[0] == 'echo':
            return (' '.join(words[1:]) + '\r\n').encode()
        return ('sh: %s: not found\r\n' % words[0]).encode()

    def _receive(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            if byte in (0x0d, 0x0a):
                line = self._line.decode('utf-8', 'replace')
                self._line.clear()
                self._log('# %s' % line)
                out += b'\r\n' + self._answer(line) + PROMPT
            elif byte in (0x08, 0x7f):
                if self._line:
                    del self._line[-1]
                    out += b'\b \b'
            else:
                self._line.append(byte)
                out.append(byte)
        self.stream.feed(bytes(out))

    def hang_up(self) -> None:
        """End the session: the guest stopped or went away."""
        self.stream.finish()
