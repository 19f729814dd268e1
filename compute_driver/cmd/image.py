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

"""``compute-driver image ...``: the configured image service and cache.

``image upload|list|show|delete`` work on the image service of
``[image_service]`` (the local directory or Glance) without loading the
backend; in the interactive mode, once a backend is loaded, they work on
that backend's (the fake backend's in-memory one). ``image cache
list|prune`` work on the backend's download cache.
"""

import argparse
import datetime
import os
import time
import typing

from compute_driver.cmd import common

if typing.TYPE_CHECKING:  # pragma: no cover
    from compute_driver.cmd import main
    from compute_driver import driver as contract
    from compute_driver.image import api

#: Seconds between two redraws of the progress bar.
_REDRAW = 0.2
_BAR = 30


def _loaded_driver(app: 'main.App') -> 'contract.ComputeDriver | None':
    # The backend the interactive mode already loaded, if any: its image
    # service is the one its boots use.
    return app._driver


def image_service(app: 'main.App') -> 'api.ImageService':
    """The image service the command works on."""
    backend = _loaded_driver(app)
    if backend is not None:
        return backend.image_service
    from compute_driver import image
    return image.load(app.conf)


def _record_fields(record: 'api.ImageRecord'
                   ) -> tuple[tuple[str, ...], tuple[typing.Any, ...]]:
    return (('id', 'name', 'status', 'disk_format', 'container_format',
             'size', 'checksum', 'os_hash_algo', 'os_hash_value', 'min_ram',
             'min_disk', 'properties'),
            (record.id, record.name, record.status,
             record.disk_format or '', record.container_format or '',
             record.size, record.checksum or '', record.os_hash_algo or '',
             record.os_hash_value or '', record.min_ram, record.min_disk,
             common.DictColumn(record.properties)))


class ProgressReader:
    """A file object drawing a progress bar on a terminal as it is read.

    :param fileobj: the binary file read.
    :param total: its size in bytes.
    :param stream: the terminal (stderr); nothing is drawn when it is not
        one, so scripts and logs get no control characters.
    """

    def __init__(self, fileobj: typing.BinaryIO, total: int,
                 stream: typing.TextIO, label: str) -> None:
        self._fileobj = fileobj
        self._total = max(total, 1)
        self._stream = stream
        self._label = label
        self._done = 0
        self._drawn = 0.0
        self.enabled = bool(getattr(stream, 'isatty', lambda: False)())

    def read(self, size: int = -1) -> bytes:
        data = self._fileobj.read(size)
        self._done += len(data)
        now = time.monotonic()
        if self.enabled and (not data or now - self._drawn >= _REDRAW):
            self._drawn = now
            self._draw()
        return data

    def _draw(self) -> None:
        fraction = min(self._done / self._total, 1.0)
        filled = int(fraction * _BAR)
        self._stream.write('\r%s [%s%s] %3d%% %.1f/%.1f MiB' % (
            self._label, '#' * filled, '.' * (_BAR - filled),
            fraction * 100, self._done / 2 ** 20, self._total / 2 ** 20))
        self._stream.flush()

    def finish(self) -> None:
        """End the bar's line, if one was drawn."""
        if self.enabled and self._drawn:
            self._draw()
            self._stream.write('\n')
            self._stream.flush()


class UploadImage(common.ShowOne):
    """Upload a file as a new image of the configured image service."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='NAME', help='New image name.')
        parser.add_argument('--file', metavar='PATH', required=True,
                            help='The image data.')
        parser.add_argument(
            '--disk-format', metavar='FORMAT', required=True,
            help='raw, qcow2, vhd, vhdx, vdi, aki, ari, iso...; the '
                 'backends check it against the data before booting.')
        parser.add_argument('--container-format', metavar='FORMAT',
                            default='bare',
                            help='bare (the default), docker, aki, ari...')
        parser.add_argument('--min-ram', metavar='MB', default=0,
                            type=common.int_at_least(0),
                            help='Memory in MiB the image needs.')
        parser.add_argument('--min-disk', metavar='GB', default=0,
                            type=common.int_at_least(0),
                            help='Disk in GiB the image needs.')
        parser.add_argument(
            '--property', metavar='KEY=VALUE', dest='properties',
            action=common.KeyValueAction, default={},
            help='Set an image property (kernel_id, ramdisk_id, '
                 'os_command_line...); repeatable.')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> typing.Any:
        service = image_service(self.app)
        try:
            source = open(parsed_args.file, 'rb')
        except OSError as exc:
            raise common.CommandFailed(
                message='cannot read %s: %s' % (
                    parsed_args.file, exc.strerror or exc)) from None
        with source:
            progress = ProgressReader(
                source, os.fstat(source.fileno()).st_size, self.app.stderr,
                'Uploading %s' % parsed_args.name)
            try:
                record = service.upload(
                    parsed_args.name, typing.cast(typing.BinaryIO, progress),
                    parsed_args.disk_format, parsed_args.container_format,
                    properties=parsed_args.properties,
                    min_ram=parsed_args.min_ram,
                    min_disk=parsed_args.min_disk)
            finally:
                progress.finish()
        return _record_fields(record)


class ListServiceImages(common.Lister):
    """List the images of the configured image service."""

    def take_action(self, parsed_args: argparse.Namespace) -> typing.Any:
        rows = [(r.id, r.name, r.status, r.disk_format or '',
                 r.container_format or '', r.size)
                for r in image_service(self.app).list()]
        return (('ID', 'Name', 'Status', 'Disk Format', 'Container Format',
                 'Size'), rows)


class ShowServiceImage(common.ShowOne):
    """Show one image of the configured image service."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='IMAGE',
                            help='Image id, or a name only one image has.')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> typing.Any:
        return _record_fields(image_service(self.app).show(parsed_args.image))


class DeleteServiceImage(common.Command):
    """Delete images of the configured image service."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('images', metavar='IMAGE', nargs='+',
                            help='Image id, or a name only one image has.')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        service = image_service(self.app)
        # Every reference resolved first: one unknown deletes none.
        records = [service.show(ref) for ref in parsed_args.images]
        for record in records:
            service.delete(record.id)


def _cache_backend(app: 'main.App') -> 'contract.ComputeDriver':
    backend = _loaded_driver(app)
    if backend is not None:
        return backend
    # Built, not connected: where its cache is needs no hypervisor.
    from compute_driver import loader
    return loader.load_driver(app.conf)


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(
        epoch, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


_CACHE_COLUMNS = ('Image ID', 'Size', 'Last Used', 'Path')


class ListImageCache(common.Lister):
    """List the images in the backend's download cache, oldest use first."""

    def take_action(self, parsed_args: argparse.Namespace) -> typing.Any:
        cache = _cache_backend(self.app).image_cache
        return _CACHE_COLUMNS, [(c.image_id, c.size, _when(c.last_used),
                                 c.path) for c in cache.list()]


class PruneImageCache(common.Lister):
    """Remove cached images no instance uses and unused for a while.

    Lists what was removed. Images of the host's instances (and their
    kernels and ramdisks) are kept whatever their age.
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--max-age', metavar='SECONDS', type=common.int_at_least(0),
            default=None,
            help='Remove images unused for longer than this; default '
                 '[image_service] cache_max_age. 0 removes every image '
                 'no instance uses.')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> typing.Any:
        removed = self.app.driver.manage_image_cache(
            max_age=parsed_args.max_age)
        return _CACHE_COLUMNS, [(c.image_id, c.size, _when(c.last_used),
                                 c.path) for c in removed]
