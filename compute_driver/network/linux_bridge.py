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

"""An os-vif plugin for Linux bridges, through netlink with pyroute2.

os-vif 5 no longer ships its ``linux_bridge`` plugin (Neutron dropped
the Linux bridge agent), but standalone networks here are Linux bridges
and so are many Neutron deployments' provider networks.
:mod:`compute_driver.network.plug` uses os-vif's own plugin of that name
when the installed os-vif has one, and this one otherwise; both plug a
``VIFBridge`` the same way: the bridge exists (or is created when the
network says the host provides it), with its VLAN interface when the
host provides the VLAN. The port's device itself (a hypervisor's tap, or
a veth from :mod:`compute_driver.network.netlink`) is attached by whoever
creates it.
"""

import typing

from os_vif import objects
from os_vif import plugin

from compute_driver.network import exception as net_exception
from compute_driver.network import netlink

PLUGIN_NAME = 'linux_bridge'


class LinuxBridgePlugin(plugin.PluginBase):
    """Plugs ``VIFBridge`` objects into Linux bridges."""

    def describe(self) -> typing.Any:
        return objects.host_info.HostPluginInfo(
            plugin_name=PLUGIN_NAME,
            vif_info=[objects.host_info.HostVIFInfo(
                vif_object_name=objects.vif.VIFBridge.__name__,
                min_version='1.0', max_version='1.0')])

    def plug(self, vif: typing.Any, instance_info: typing.Any) -> None:
        """Make sure the VIF's bridge (and VLAN interface) is there.

        :raises BridgeNotFound: when the bridge is missing and the network
            does not let the host create it.
        """
        network = vif.network
        bridge = vif.bridge_name
        mtu = network.mtu if network.obj_attr_is_set('mtu') else None
        provide = (network.obj_attr_is_set('should_provide_bridge')
                   and network.should_provide_bridge)
        if not netlink.link_exists(bridge):
            if not provide:
                raise net_exception.BridgeNotFound(bridge=bridge,
                                                   port=vif.id)
            netlink.create_bridge(bridge, mtu=mtu)
        if (network.obj_attr_is_set('should_provide_vlan')
                and network.should_provide_vlan
                and network.obj_attr_is_set('bridge_interface')
                and network.bridge_interface):
            netlink.ensure_vlan(network.bridge_interface, network.vlan,
                                bridge, mtu=mtu)

    def unplug(self, vif: typing.Any, instance_info: typing.Any) -> None:
        """Nothing to undo: the bridge is shared by the network's ports.

        The port's device goes with whoever made it (the hypervisor
        deletes its tap, :func:`compute_driver.network.netlink.
        unplug_veth` the veth); :mod:`compute_driver.network.plug`
        deletes one left behind.
        """
