"""Provider adapters: the one narrow interface (create, poll, delete, list, snapshot) each cloud implements."""

from __future__ import annotations

from gatekeeper.config.layout import Provider
from gatekeeper.launcher.providers.base import ProviderAdapter


def make_adapter(provider: Provider, clouds_yaml: str | None, owner: str) -> ProviderAdapter:
    """The adapter for a provider's `driver`."""
    if provider.driver == "static":
        from gatekeeper.launcher.providers.static import StaticAdapter

        return StaticAdapter(provider.hosts)
    from gatekeeper.launcher.providers.openstack import OpenStackAdapter

    return OpenStackAdapter(provider.cloud, clouds_yaml, owner, provider.region)
