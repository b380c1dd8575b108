"""Joining a Ray cluster, or starting a local Ray, with one-line errors (the ``ray`` and
``rllib`` extras): what ``bench agents --ray`` and the RLlib recipe share."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from musicgym.checks import import_optional
from musicgym.errors import ArgumentError

CONNECT_TIMEOUT_S = 5.0
"""How long the address of a cluster may take to accept a TCP connection before it is reported
unreachable (Ray itself would retry for a minute or more)."""


def ray_address_port(address: str, what: str = "--ray") -> tuple[str, int] | None:
    """``(host, port)`` of a cluster address (``HOST:PORT`` or ``ray://HOST:PORT``), ``None`` for
    ``auto`` or ``local``; :class:`ArgumentError` naming the option ``what`` for anything
    else."""
    if address in ("auto", "local"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ArgumentError(
            f"{what} {address!r}: expected HOST:PORT, ray://HOST:PORT or auto (or no address "
            "for a local Ray)"
        )
    return host.strip("[]"), int(port)


def check_ray(address: str = "", what: str = "--ray") -> Any:
    """Before a long run: Ray is installed, ``address`` is well formed and something accepts a
    connection there (an empty address: a local Ray will be started). Returns the ``ray``
    module; one line (:class:`~musicgym.errors.MusicgymError`) otherwise."""
    ray = import_optional("ray", "ray", "running on Ray")
    where = ray_address_port(address, what) if address else None
    if where is not None:
        try:
            socket.create_connection(where, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ArgumentError(
                f"{what} {address}: no Ray cluster answers there ({reason}); start one with "
                "`ray start --head` or check the address"
            ) from None
    return ray


def connect(
    address: str = "", num_cpus: int | None = None, what: str = "--ray", **init_options: Any
) -> Any:
    """``ray.init``: join the cluster at ``address``, or with an empty address start a local Ray
    with ``num_cpus`` CPUs (``None``: all of this machine's). Returns the ``ray`` module.

    One line (:class:`~musicgym.errors.MusicgymError`) when Ray is not installed, the address is
    malformed, nothing accepts a connection there within :data:`CONNECT_TIMEOUT_S`, or Ray
    refuses it; ``what`` names the option that gave the address."""
    ray = check_ray(address, what)
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        **init_options,
    }
    if address:
        options["address"] = address
    else:
        options["num_cpus"] = num_cpus
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise ArgumentError(f"{what} {address or '(local)'}: Ray did not start ({first})") from None
    return ray
