"""kube-proxy: per-node service networking. The service map (``servicemap``) built from
Services and Endpoints is programmed by a backend, iptables NAT rules (``iptables``) or an
asyncio TCP proxy (``userspace``), after ``netsetup`` has routed the service CIDR to a
port-less bridge; ``proxier`` runs the debounced sync loop and ``main`` the process. The
node's cluster DNS (``dns``) runs in the same process."""
