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

"""Sphinx configuration of compute-driver's user documentation."""

import os
import sys

# autodoc imports the package from this tree rather than from an
# installed copy, so the docs environment needs no install (and no git
# history for pbr's version).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                '..', '..')))
# This manual's own extensions.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '_ext'))

project = 'compute-driver'
copyright = 'compute-driver contributors'
master_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'

extensions = ['sphinx.ext.autodoc', 'operation_tables']
# Members in source order: the contract reads in the order its module
# explains it.
autodoc_member_order = 'bysource'
# Signatures keep their annotations; the descriptions stay readable.
autodoc_typehints = 'signature'
