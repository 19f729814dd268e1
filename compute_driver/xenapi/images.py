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

"""Templates and snapshots: the backend's images.

XAPI keeps both as VMs flagged ``is_a_template``; a snapshot taken by
:meth:`ImageStore.snapshot` also names the instance it was taken of in
its ``other_config``. The event watcher knows every template, so finding
one usually costs no call.
"""

import dataclasses
import typing

from compute_driver import exception
from compute_driver import objects
from compute_driver.xenapi import connection
from compute_driver.xenapi import events
from compute_driver.xenapi import mapping

Record = dict[str, typing.Any]


@dataclasses.dataclass(frozen=True)
class Template(objects.ImageMeta):
    """An image with the template or snapshot VM it stands for.

    :param ref: the VM's reference.
    :param record: the VM's record.
    """

    ref: str = ''
    record: Record = dataclasses.field(default_factory=dict, compare=False,
                                       repr=False)


class ImageStore:
    """The templates and snapshots of the pool.

    :param xapi: the connection to call through.
    :param default_template: ``[xenapi] default_template``, listed first.
    """

    def __init__(self, xapi: connection.Connection,
                 default_template: str) -> None:
        self._xapi = xapi
        self._default = default_template
        #: Set once :meth:`init_host` started it.
        self.watcher: events.EventWatcher | None = None

    def _all(self, records: dict[str, Record] | None = None
             ) -> list[tuple[str, Record]]:
        if records is None:
            records = self._xapi.call('VM.get_all_records')
        return [(ref, rec) for ref, rec in records.items()
                if mapping.is_image(rec)]

    def find(self, ref: str, records: dict[str, Record] | None = None
             ) -> tuple[str, Record] | None:
        """The template or snapshot an image reference names.

        :param records: VM records to look in; all of them by default.
        :raises InvalidInput: when several share the name.
        """
        matches = [(r, rec) for r, rec in self._all(records)
                   if mapping.matches_image(rec, ref)]
        if len(matches) > 1:
            exact = [m for m in matches if m[1]['uuid'] == ref]
            if len(exact) == 1:
                return exact[0]
            raise exception.InvalidInput(
                reason='%d templates are named %s; name one by uuid: %s'
                       % (len(matches), ref,
                          ', '.join(m[1]['uuid'] for m in matches)))
        return matches[0] if matches else None

    def get(self, ref: str) -> Template:
        """The image to boot from, from what the event watcher knows.

        When the watcher does not know it (yet), one call reads every
        template, however many VMs there are.

        :raises ImageNotFound: naming the images there are.
        """
        watcher = self.watcher
        known = watcher.templates() if watcher is not None else None
        found = self.find(ref, known) if known is not None else None
        records = known or {}
        if found is None:
            records = self._xapi.call('VM.get_all_records_where',
                                      'field "is_a_template" = "true"')
            found = self.find(ref, records)
        if found is None:
            raise exception.ImageNotFound(
                image=ref, available=', '.join(sorted(
                    mapping.image_name(rec) for _, rec in
                    self._all(records))) or 'none')
        meta = mapping.image_meta(found[1])
        return Template(**{f.name: getattr(meta, f.name)
                           for f in dataclasses.fields(meta)},
                        ref=found[0], record=found[1])

    def list_images(self) -> list[objects.ImageMeta]:
        """Every image, ``[xenapi] default_template`` first."""
        images = [mapping.image_meta(rec) for _, rec in self._all()]
        # The default template first: callers that boot "the first image"
        # (verify, the conformance suite) then boot it.
        images.sort(key=lambda m: (
            m.properties.get('name_label') != self._default and
            m.name != self._default,
            m.properties.get('image_type') == 'snapshot', m.name))
        return images

    def snapshots_of(self, instance: objects.Instance) -> list[str]:
        """Names of the snapshots taken of ``instance``."""
        return [meta.name for meta in self.list_images()
                if meta.properties.get('instance_uuid') == instance.uuid]

    def snapshot(self, ref: str, instance: objects.Instance,
                 image_id: str) -> None:
        """Snapshot the instance's VM as ``image_id``.

        Nothing is left of a snapshot that fails.
        """
        snap = self._xapi.task('VM.snapshot', ref, image_id)
        try:
            self._xapi.call('VM.add_to_other_config', snap,
                            mapping.KEY_SNAPSHOT_OF, instance.uuid)
        except connection.XapiCallFailed:
            self._xapi.remove_vm(snap)
            raise

    def snapshot_named(self, image_id: str) -> tuple[str, Record] | None:
        """The snapshot ``image_id``, or ``None`` when there is none.

        :raises InvalidInput: when the image is not a snapshot.
        """
        found = self.find(image_id)
        if found is None:
            return None
        if not found[1]['is_a_snapshot'] or (
                mapping.KEY_SNAPSHOT_OF not in found[1]['other_config']):
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % image_id)
        return found

    def delete_snapshot(self, image_id: str) -> None:
        """Delete a snapshot and its own disks; absent is fine."""
        found = self.snapshot_named(image_id)
        if found is not None:
            self._xapi.remove_vm(found[0])
