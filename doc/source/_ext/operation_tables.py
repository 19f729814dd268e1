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

"""Tables of the contract's operations, generated from its own tables.

``.. operation-table::`` renders :data:`compute_driver.driver.OPERATIONS`
with each operation's call and power-state transition, so the manual
cannot drift from what the CLI, ``verify``, the conformance suite and the
Nova adapter read.
"""

from docutils import nodes
from docutils.parsers.rst import Directive

from compute_driver import driver as contract
from compute_driver import event as virtevent
from compute_driver import power_state


def _call(operation: contract.Operation) -> str:
    args = ['instance'] if operation.on_instance else []
    args += ['%s=%r' % kv for kv in operation.fixed]
    args += list(operation.needs)
    return '``%s(%s)``' % (operation.method, ', '.join(args))


def _row(operation: contract.Operation) -> list[str]:
    transition = operation.transition
    if transition is None:
        return [operation.name, _call(operation), '', '', '']
    return [operation.name, _call(operation),
            ', '.join(power_state.name(s) for s in transition.allowed),
            'unchanged' if transition.result is None
            else power_state.name(transition.result),
            ', '.join(virtevent.NAMES[e] for e in transition.events)]


def _entry(text: str, state) -> nodes.entry:
    entry = nodes.entry()
    if text:
        paragraph, _ = state.inline_text(text, 0)
        entry += nodes.paragraph('', '', *paragraph)
    return entry


class OperationTable(Directive):
    """Every optional operation: its call, allowed states, result, events."""

    has_content = False
    header = ['operation', 'called as', 'allowed from', 'result', 'events']

    def run(self) -> list[nodes.Node]:
        rows = [self.header] + [_row(op)
                                for op in contract.OPERATIONS.values()]
        group = nodes.tgroup(cols=len(self.header))
        for _ in self.header:
            group += nodes.colspec(colwidth=1)
        for part, part_rows in ((nodes.thead(), rows[:1]),
                                (nodes.tbody(), rows[1:])):
            for values in part_rows:
                row = nodes.row()
                for text in values:
                    row += _entry(text, self.state)
                part += row
            group += part
        return [nodes.table('', group)]


def setup(app):
    app.add_directive('operation-table', OperationTable)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
