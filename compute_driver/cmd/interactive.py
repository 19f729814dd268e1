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

"""The interactive mode: ``compute-driver`` run without a command.

Kept apart from :mod:`compute_driver.cmd.main` because it imports cmd2,
which is slow to import and only needed here.
"""

import sys

from cliff import interactive


class InteractiveApp(interactive.InteractiveApp):
    """cliff's interactive mode, minus cmd2's reading of ``sys.argv``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # cmd2 queues the program's own arguments as commands to run first;
        # ours are the global options (--config-file ...) the App has
        # already parsed, and under pytest they are pytest's.
        startup = getattr(self, '_startup_commands', None)
        if startup is not None:
            startup.clear()
        # cmd2 before 4.0 (what Python 3.10 gets) reads sys.stdin through
        # input() whatever stream it was given; read the given one.
        if self.stdin is not sys.stdin:
            self.use_rawinput = False
