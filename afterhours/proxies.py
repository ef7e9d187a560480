"""Which peers may speak for a client: the proxies in TRUSTED_PROXY_IPS."""

import ipaddress
import logging

from django.conf import settings

logger = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def trusted_proxy(address: Address | str | None) -> bool:
    """True when `address` is in one of TRUSTED_PROXY_IPS (addresses or
    networks); an unreadable address never is."""
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        try:
            address = ipaddress.ip_address(address or "")
        except ValueError:
            return False
    for entry in settings.TRUSTED_PROXY_IPS:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            logger.error("TRUSTED_PROXY_IPS: %r is not an address or network", entry)
            continue
        if address in network:
            return True
    return False
