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

"""Block storage volumes: connection info, os-brick connections, records.

Volumes come as Cinder hands them to Nova: a *connection info* dict with a
``driver_volume_type`` (``local`` or ``iscsi``) and the ``data`` its
os-brick connector takes. :mod:`.connection` validates it and connects it
through os-brick on this host, :mod:`.model` holds what an instance
records about each attached volume, and the contract's pipeline
(:class:`compute_driver.driver.ComputeDriver`) runs attach, detach, swap
and extend on every backend the same way.
"""
