"""The recovery ladder blames the module only on evidence about the module (issue 15, item 9).

A CSMS that is down or restarting refuses TCP connections (``+QIOPEN: <id>,566``) while the
module's data link is healthy; a CSMS whose certificate the charge point refuses fails the TLS
handshake. Neither is cured by re-activating the PDP context or resetting the module, so the
daemon reconnects with back-off and sends none of AT+QIDEACT, AT+CFUN or AT+QPOWD.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from chargepoint.app.daemon import Daemon
from chargepoint.app.reconnect import Blame
from tests.harness import PASSWORD, csms_peer, make_config, network, running
from tests.peers import ServerTls
from tests.pki import make_pki

MODULE_RECOVERY = ("AT+QIDEACT", "AT+CFUN", "AT+QPOWD")
OUTAGE = 90.0  # seconds the CSMS is away
BACKOFF_CAP = 4.0


def module_recovery(log: list[str]) -> list[str]:
    return [c for c in log if c.startswith(MODULE_RECOVERY)]


async def test_a_csms_outage_of_90_s_never_touches_the_module() -> None:
    async with csms_peer("python", password=PASSWORD) as peer, network("quectel") as net:
        assert net.sim is not None
        config = make_config(peer.url, reconnect_delay_min=0.5, reconnect_delay_max=BACKOFF_CAP)
        daemon = Daemon(config, net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
            await peer.stop()  # the CSMS process goes away; the cell stays fine
            await asyncio.sleep(OUTAGE)  # the outage itself, not a wait for anything
            refused = len(daemon.outcomes)
            await peer.start()  # the same port
            async with asyncio.timeout(BACKOFF_CAP + 5):
                await peer.wait_for(lambda e: sum(x["event"] == "connect" for x in e) == 2)
        assert refused >= 10  # it kept trying all along (about one attempt per cap)
        assert all(o.blame is Blame.CSMS for o in daemon.outcomes), daemon.outcomes
        assert module_recovery(net.sim.module.log) == []
        opens = [c for c in net.sim.module.log if c.startswith("AT+QIOPEN")]
        # One socket per attempt, nothing else (one attempt may have been under way when the
        # outcomes were counted).
        assert refused + 1 <= len(opens) <= refused + 2


async def test_a_csms_certificate_the_module_refuses_never_touches_the_module(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    untrusted = ServerTls(pki.untrusted_server.cert, pki.untrusted_server.key)
    async with (
        csms_peer("python", password=PASSWORD, tls=untrusted) as peer,
        network("quectel") as net,
    ):
        assert net.sim is not None
        config = make_config(
            peer.url,
            security_profile=2,
            ca_file=str(pki.ca),
            reconnect_delay_min=0.05,
            reconnect_delay_max=0.2,
        )
        daemon = Daemon(config, net.link)
        async with running(daemon):
            # Twelve refusals: four times what used to re-activate the PDP context.
            await peer.wait_for(lambda _: peer.count("tls_failed") >= 12, timeout=90)
            await peer.stop()
            peer.tls = ServerTls(pki.server.cert, pki.server.key)  # the CSMS fixed it
            await peer.start()
            await peer.wait_for(lambda _: peer.calls("BootNotification"), timeout=30)
        assert not [o for o in daemon.outcomes if o.blame is not Blame.CSMS]
        assert module_recovery(net.sim.module.log) == []


async def test_a_module_whose_tls_stack_degraded_is_restarted(tmp_path: Path) -> None:
    """at-protocol.md §9.11: after many opens some firmware answers 552 to every AT+QSSLOPEN
    until it reboots. That is evidence about the module: the ladder climbs to a restart, and
    the charge point is back."""
    pki = make_pki(tmp_path)
    tls = ServerTls(pki.server.cert, pki.server.key)
    async with (
        csms_peer("python", password=PASSWORD, tls=tls) as peer,
        network("quectel") as net,
    ):
        assert net.sim is not None
        sim = net.sim
        sim.module.ssl_degrade_after = 2
        config = make_config(
            peer.url,
            security_profile=2,
            ca_file=str(pki.ca),
            reconnect_delay_min=0.01,
            reconnect_delay_max=0.05,
        )
        async with running(Daemon(config, net.link)):
            for opened in (1, 2):
                await peer.wait_for(lambda e, n=opened: connections(e) == n)
                sim.drop_connection(0)  # the cell drops it; the next open is the third
            await sim.wait_for_command("AT+CFUN=1,1")
            await peer.wait_for(lambda e: connections(e) == 3, timeout=60)
        log = sim.module.log
        assert log.index("AT+QIDEACT=1") < log.index("AT+CFUN=1,1")  # the ladder, in order
        assert "AT+QSSLOPEN" in " ".join(log[log.index("AT+CFUN=1,1") :])  # TLS again after it


def connections(events: list[dict[str, object]]) -> int:
    return sum(e["event"] == "connect" for e in events)
