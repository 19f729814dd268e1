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

"""``VDI.copy``, ``VDI.resize`` and ``VDI.resize_online``.

What they check and raise follows xapi (ocaml/xapi/xapi_vdi.ml: the
operation checks, ``copy`` and ``resize``; sm_fs_ops.ml: the data copy)
and the SM drivers behind it (xapi-project/sm: FileSR, LVHDSR, vhdutil):

- an operation on a VDI that a VBD has ``currently_attached`` fails with
  ``VDI_IN_USE [vdi, operation]``, but for ``resize_online``, and for
  ``copy`` when the VBDs are read-only;
- ``resize`` and ``resize_online`` need the SR type's SM feature
  (``VDI_RESIZE``, ``VDI_RESIZE_ONLINE``), else
  ``SR_OPERATION_NOT_SUPPORTED [sr]``. No SM driver XenServer or XCP-ng
  ships declares ``VDI_RESIZE_ONLINE``; :func:`set_sm_features` gives an
  SR type one, as a storage plugin would. ``resize`` of a VDI on an SR
  whose PBDs are unplugged is ``SR_NO_PBDS [sr]``;
- the SM driver refuses to shrink (``SR_BACKEND_FAILURE_79 ["", "VDI
  Invalid size [opterr=shrinking not allowed]", ""]``), leaves a VDI of
  the requested size alone, and rounds a larger size up to whole 2 MiB
  VHD blocks (2 MiB at least, 2040 GiB at most). The SR accounts for
  the growth; one without room for it is ``SR_FULL``, as at create;
- ``copy(vdi, sr, base_vdi, into_vdi)`` writes into ``into_vdi`` when it
  is a VDI, else into a new VDI on ``sr`` (destroyed again when the copy
  fails). A read-only destination is ``VDI_READONLY [dst]``, a smaller
  one ``VDI_TOO_SMALL [dst, source size]``; one a VM has plugged is
  written into all the same (xapi plugs it into dom0 to write, and
  dom0's VBDs are exempt from the sharing check). The bytes are copied
  as ``sparse_dd`` does: with ``base_vdi`` only the blocks that differ
  from it; else, on SRs whose new VDIs read as zeros (all but the LVM
  types without VHD), only the non-zero ones.
  The destination's ``physical_utilisation`` (and its SR's) counts the
  bytes the copy wrote.
"""

import typing

from compute_driver.testing.xapi_simulator import store as db
from compute_driver.testing.xapi_simulator import vdi_http

if typing.TYPE_CHECKING:  # pragma: no cover
    from compute_driver.testing.xapi_simulator import api

MiB = 1024 * 1024
#: vhdutil's VHD_BLOCK_SIZE, MIN_VHD_SIZE and MAX_VHD_SIZE.
VHD_BLOCK = 2 * MiB
MIN_VHD_SIZE = 2 * MiB
MAX_VHD_SIZE = vdi_http.MAX_VHD_SIZE
#: The SM error code of ``VDISize`` (XE_SR_ERRORCODES.xml).
VDI_SIZE_ERROR = 'SR_BACKEND_FAILURE_79'

_RESIZABLE = frozenset(('VDI_CREATE', 'VDI_DELETE', 'VDI_RESIZE',
                        'VDI_CLONE', 'VDI_SNAPSHOT'))
#: The SM features of each SR type, as its driver's CAPABILITIES list
#: them (only those these calls look at).
SM_FEATURES: dict[str, frozenset[str]] = {
    'ext': _RESIZABLE, 'nfs': _RESIZABLE, 'file': _RESIZABLE,
    'smb': _RESIZABLE, 'lvm': _RESIZABLE, 'lvmoiscsi': _RESIZABLE,
    'lvmohba': _RESIZABLE,
    'iso': frozenset(('VDI_CREATE', 'VDI_DELETE')),
    'udev': frozenset(),
}
#: SR types whose new VDIs are not zeroed (sm_fs_ops'
#: must_write_zeroes_into_new_vdi): a copy writes every block there.
NOT_ZEROED = ('lvm', 'lvmoiscsi', 'lvmohba')


def _features(store: db.Store, sr_type: str) -> frozenset[str]:
    own = getattr(store, 'sm_features', {})
    return own.get(sr_type, SM_FEATURES.get(sr_type, frozenset()))


def set_sm_features(store: db.Store, sr_type: str,
                    features: typing.Iterable[str]) -> None:
    """Give SRs of ``sr_type`` these SM features (``VDI_RESIZE_ONLINE``).

    What XAPI's ``SM`` record of a storage plugin declares; the stock
    types' features are :data:`SM_FEATURES`.
    """
    with store.lock:
        own = getattr(store, 'sm_features', None)
        if own is None:
            own = store.sm_features = {}  # type: ignore[attr-defined]
        own[sr_type] = frozenset(features)


def _size(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise db.ApiError('FIELD_TYPE_ERROR', 'size') from None


def _active(api_: 'api.Api', vdi: db.Record,
            read_write_only: bool = False) -> bool:
    for ref in vdi['VBDs']:
        vbd = api_.store.get('VBD', ref)
        if vbd['currently_attached'] and (
                not read_write_only or vbd['mode'] == 'RW'):
            return True
    return False


def _check_managed(ref: str, vdi: db.Record) -> None:
    if not vdi['managed']:
        raise db.ApiError('VDI_NOT_MANAGED', ref)


def _resize(api_: 'api.Api', ref: str, size: object, online: bool) -> str:
    store = api_.store
    vdi = store.get('VDI', ref)
    requested = _size(size)
    sr_ref = vdi['SR']
    sr = store.get('SR', sr_ref)
    operation = 'resize_online' if online else 'resize'
    if not online and not any(
            store.get('PBD', p)['currently_attached'] for p in sr['PBDs']):
        raise db.ApiError('SR_NO_PBDS', sr_ref)
    if not online and _active(api_, vdi):
        raise db.ApiError('VDI_IN_USE', ref, operation)
    feature = 'VDI_RESIZE_ONLINE' if online else 'VDI_RESIZE'
    if feature not in _features(store, sr['type']):
        raise db.ApiError('SR_OPERATION_NOT_SUPPORTED', sr_ref)
    _check_managed(ref, vdi)
    current = int(vdi['virtual_size'])
    if requested < current:
        raise db.ApiError(VDI_SIZE_ERROR, '',
                          'VDI Invalid size [opterr=shrinking not allowed]',
                          '')
    if requested == current:
        return ''
    if requested > MAX_VHD_SIZE:
        raise db.ApiError(VDI_SIZE_ERROR, '',
                          'VDI Invalid size [opterr=VDI size must be '
                          'between 1 MB and %d MB]' % (MAX_VHD_SIZE // MiB),
                          '')
    rounded = max(MIN_VHD_SIZE, -(-requested // VHD_BLOCK) * VHD_BLOCK)
    growth = rounded - current
    free = int(sr['physical_size']) - int(sr['physical_utilisation'])
    if growth > free:
        raise db.ApiError('SR_FULL', growth, free)
    store.update('VDI', ref, virtual_size=str(rounded))
    vdi_http.set_physical(store, ref,
                          int(vdi['physical_utilisation']) + growth)
    return ''


def resize(api_: 'api.Api', ref: str, size: object) -> str:
    """``VDI.resize``: of a VDI no running VM has plugged."""
    return _resize(api_, ref, size, online=False)


def resize_online(api_: 'api.Api', ref: str, size: object) -> str:
    """``VDI.resize_online``: plugged or not, where the SR type can."""
    return _resize(api_, ref, size, online=True)


def _check_copy_source(api_: 'api.Api', ref: str, vdi: db.Record) -> None:
    _check_managed(ref, vdi)
    if _active(api_, vdi, read_write_only=True):
        raise db.ApiError('VDI_IN_USE', ref, 'copy')
    if vdi['type'] in ('ha_statefile', 'redo_log'):
        raise db.ApiError('OPERATION_NOT_ALLOWED',
                          "VDI containing HA statefile or redo log cannot be "
                          "copied (check the VDI's allowed operations).")
    if vdi['on_boot'] == 'reset':
        raise db.ApiError(
            'VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION')


def copy(api_: 'api.Api', ref: str, sr: str = db.NULL_REF,
         base_vdi: str = db.NULL_REF, into_vdi: str = db.NULL_REF) -> str:
    """``VDI.copy``: the VDI written into, ``into_vdi`` or a new one."""
    store = api_.store
    source = store.get('VDI', ref)
    _check_copy_source(api_, ref, source)
    created = None
    if into_vdi in store.table('VDI'):
        dst = into_vdi
    else:
        created = dst = api_._vdi_create({
            'name_label': source['name_label'],
            'name_description': source['name_description'], 'SR': sr,
            'virtual_size': source['virtual_size'], 'type': source['type'],
            'sharable': source['sharable'], 'read_only': False,
            'other_config': dict(source['other_config']),
            'xenstore_data': dict(source['xenstore_data']),
            'tags': list(source['tags']), 'on_boot': source['on_boot'],
            'allow_caching': source['allow_caching']})
    try:
        target = store.get('VDI', dst)
        if target['read_only']:
            raise db.ApiError('VDI_READONLY', dst)
        if int(target['virtual_size']) < int(source['virtual_size']):
            raise db.ApiError('VDI_TOO_SMALL', dst, source['virtual_size'])
        base = base_vdi if base_vdi in store.table('VDI') else None
        sr_type = store.get('SR', target['SR'])['type']
        zeroed = not (sr_type in NOT_ZEROED and
                      store.get('SR', target['SR'])['sm_config'].get(
                          'use_vhd') != 'true')
        if base is not None and not zeroed:
            raise db.ApiError('VDI_NOT_SPARSE', dst)
        written = _copy_bytes(store, ref, dst, base, zeroed)
    except BaseException:
        if created is not None:
            api_._vdi_destroy(created)
        raise
    if created is not None:
        vdi_http.set_physical(store, dst, written)
    else:
        vdi_http.set_physical(store, dst, max(
            written, int(store.get('VDI', dst)['physical_utilisation'])))
    return dst


def _copy_bytes(store: db.Store, source: str, target: str,
                base: str | None, zeroed: bool) -> int:
    """Write the source's bytes into the target; how many were written."""
    disks = vdi_http.disks_of(store)
    size = int(store.get('VDI', source)['virtual_size'])
    target_size = int(store.get('VDI', target)['virtual_size'])
    base_size = (int(store.get('VDI', base)['virtual_size'])
                 if base is not None else 0)
    chunks: typing.Iterable[tuple[int, bytes]]
    if zeroed:
        # Only blocks with data in the source or the base can differ
        # from what the target holds already (zeros, or the base's
        # bytes). They are found with SEEK_DATA, as sparse_dd skips
        # holes: a copy of a mostly empty 20 GiB disk reads what it holds.
        blocks = set(disks.written_blocks(source, size, vdi_http.CHUNK))
        if base is not None:
            blocks.update(disks.written_blocks(
                base, min(base_size, size), vdi_http.CHUNK))
        chunks = ((block * vdi_http.CHUNK, next(disks.chunks(
            source, size, block * vdi_http.CHUNK, vdi_http.CHUNK)))
            for block in sorted(blocks))
    else:
        # The target may hold anything: every block is written.
        chunks = _offsets(disks.chunks(source, size))
    written = 0
    with disks.open(target, target_size) as out:
        for offset, chunk in chunks:
            if base is not None:
                if chunk == next(disks.chunks(base, base_size, offset,
                                              vdi_http.CHUNK), b''):
                    continue
            elif zeroed and chunk.count(0) == len(chunk):
                continue
            out.seek(offset)
            out.write(chunk)
            written += len(chunk)
    return written


def _offsets(chunks: typing.Iterable[bytes]
             ) -> typing.Iterator[tuple[int, bytes]]:
    offset = 0
    for chunk in chunks:
        yield offset, chunk
        offset += len(chunk)
