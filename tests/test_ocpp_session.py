"""The charge point against two real CSMS implementations, over the simulated module and over
host TCP: OCPP 1.6 §4.2 (boot), §4.6 (heartbeat), errata §3.22 (status after boot), OCPP-J 1.6
§3 (connection), §4.2.3 (CallErrors), §5.4 (reconnecting)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from typing import Any

import pytest
from ocpp.v16.enums import DataTransferStatus

from chargepoint.app.daemon import Daemon
from chargepoint.app.reconnect import Blame
from chargepoint.blocks.data_transfer import DataTransferReply, DataTransferVendors
from chargepoint.protocol.charge_point import SUSPICIONS_TOLD
from tests.conftest import TcpProxy, fast
from tests.harness import (
    PASSWORD,
    csms_peer,
    make_config,
    network,
    running,
    statuses,
    strict_failures,
)
from tests.peers import Csms, PythonCsms
from transport.errors import SocketsExhausted
from transport.link import RecoveryStep
from transport.modems.host import HostLink
from transport.modems.quectel import QuectelLink
from transport.simulator import SimulatorShell

PEERS = ["python", "node"]
LINKS = ["host", "quectel"]


@pytest.mark.parametrize("link_kind", LINKS)
@pytest.mark.parametrize("peer_kind", PEERS)
async def test_boot_accepted_then_status_then_heartbeats(peer_kind: str, link_kind: str) -> None:
    async with (
        csms_peer(peer_kind, password=PASSWORD, boots="Accepted:1") as peer,
        network(link_kind) as net,
    ):
        daemon = Daemon(make_config(peer.url), net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: len(peer.calls("Heartbeat")) >= 2)
        connect = next(e for e in peer.events if e["event"] == "connect")
        assert connect["identity"] == "CP-TEST/1"
        if peer_kind == "python":
            assert connect["path"] == "/ocpp/CP-TEST%2F1"  # percent-encoded (OCPP-J 1.6 §3.1.1)
        assert connect["protocol"] == "ocpp1.6"
        boot = peer.calls("BootNotification")
        assert len(boot) == 1
        params = boot[0]["params"]
        assert (params["chargePointVendor"], params["chargePointModel"]) == (
            "TestVendor",
            "TestModel",
        )
        assert params["chargePointSerialNumber"] == "SN-42"
        assert params["firmwareVersion"] == "0.1.0"
        if link_kind == "quectel":
            assert (params["iccid"], params["imsi"]) == ("89860025128306012474", "460023210226023")
        else:
            assert "iccid" not in params and "imsi" not in params
        assert statuses(peer) == [
            (0, "Available", "NoError"),
            (1, "Available", "NoError"),
            (2, "Available", "NoError"),
        ]
        # Nothing but BootNotification before the boot was accepted, status before heartbeats.
        methods = [c["method"] for c in peer.calls()]
        assert methods[:4] == [
            "BootNotification",
            "StatusNotification",
            "StatusNotification",
            "StatusNotification",
        ]
        assert strict_failures(peer) == []
        assert daemon.keys.integer("HeartbeatInterval") == 1


async def test_pending_then_accepted_answers_csms_requests_meanwhile() -> None:
    async with csms_peer("python", password=PASSWORD, boots="Pending:1,Accepted:60") as peer:
        daemon = Daemon(make_config(peer.url), HostLink())
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
            # While Pending the CSMS may ask things, and the charge point answers (§4.2).
            reply = await peer.call("DataTransfer", {"vendorId": "org.example.unknown"})
            assert reply == {"status": "UnknownVendorId"}
            await peer.wait_for(lambda _: len(statuses(peer)) == 3)
        methods = [c["method"] for c in peer.calls()]
        # No request of its own until the second BootNotification was accepted.
        assert methods[:2] == ["BootNotification", "BootNotification"]
        first, second = peer.calls("BootNotification")[:2]
        assert second["t"] - first["t"] >= 1.0  # not before the interval the CSMS gave
        assert daemon.registration.boots_sent == 2


async def test_rejected_answers_nothing_and_boots_again_after_the_interval() -> None:
    async with csms_peer("python", password=PASSWORD, boots="Rejected:1,Accepted:60") as peer:
        daemon = Daemon(make_config(peer.url), HostLink())
        async with running(daemon):
            # Right behind the Rejected answer: the charge point reads frames in order.
            await peer.wait_for(
                lambda events: [
                    e
                    for e in events
                    if e["event"] == "frame" and e["outbound"] and "Rejected" in e["text"]
                ]
            )
            await peer.send_raw('[2,"while-rejected","DataTransfer",{"vendorId":"x"}]')
            await peer.wait_for(lambda _: len(peer.calls("BootNotification")) == 2)
            # §4.2: while Rejected no answer at all, and nothing else was sent meanwhile.
            assert peer.reply_to("while-rejected") is None
            assert [c["method"] for c in peer.calls()] == ["BootNotification", "BootNotification"]
            await peer.wait_for(lambda _: len(statuses(peer)) == 3)
        first, second = peer.calls("BootNotification")[:2]
        assert second["t"] - first["t"] >= 1.0


@pytest.mark.parametrize("peer_kind", PEERS)
async def test_wrong_password_is_refused_with_401_and_retried_with_backoff(
    peer_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with csms_peer(peer_kind, password=PASSWORD, boots="Accepted:60") as peer:
        config = make_config(
            peer.url, password=b"W" * 16, reconnect_delay_min=0.2, reconnect_delay_max=0.4
        )
        daemon = Daemon(config, HostLink())
        async with running(daemon):
            await peer.wait_for(lambda _: peer.count("auth_rejected") >= 4)
        rejections = [e["t"] for e in peer.events if e["event"] == "auth_rejected"]
        gaps = [b - a for a, b in itertools.pairwise(rejections)]
        # Back-off with jitter never goes below half the minimum delay: no hot loop.
        assert min(gaps) >= 0.1
        assert peer.calls() == []
        assert all(o.blame is Blame.CSMS for o in daemon.outcomes)  # the module is not to blame
        assert "refused the charge point's credentials" in caplog.text
        assert "HTTP 401" in caplog.text
        assert "WWWW" not in caplog.text  # the password never reaches a log


async def new_session_after(peer: Csms, daemon: Daemon, fault: Any) -> None:
    """Inject ``fault`` into a running session and check a new one takes over, without a
    new BootNotification (OCPP-J 1.6 §5.4) and with heartbeats going on."""
    await peer.wait_for(lambda _: peer.calls("Heartbeat"))
    connects = peer.count("connect")
    await fault()
    await peer.wait_for(lambda _: peer.count("connect") > connects, timeout=60)
    heartbeats = len(peer.calls("Heartbeat"))
    await peer.wait_for(lambda _: len(peer.calls("Heartbeat")) > heartbeats, timeout=30)
    assert len(peer.calls("BootNotification")) == 1
    assert daemon.sessions_started == connects + 1


async def test_csms_closing_the_socket_leads_to_a_new_session() -> None:
    async with (
        csms_peer("node", password=PASSWORD, boots="Accepted:1") as peer,
        network("quectel") as net,
    ):
        daemon = Daemon(make_config(peer.url), net.link)
        async with running(daemon):
            await new_session_after(
                peer, daemon, lambda: peer.close_connection(1001, "maintenance")
            )
        assert strict_failures(peer) == []


def _socket_closed(sim: SimulatorShell) -> None:
    sim.drop_connection(0)  # the module says +QIURC: "closed"


def _pdp_deactivated(sim: SimulatorShell) -> None:
    sim.deactivate_pdp(1)  # +QIURC: "pdpdeact"


def _module_rebooted(sim: SimulatorShell) -> None:
    sim.module.profile.boot_time = 0.2
    sim.reboot()  # RDY, and everything is gone


MODULE_FAULTS = [
    # (fault, what the module log shows of the recovery)
    (_socket_closed, lambda log: sum(c.startswith("AT+QIOPEN=") for c in log) == 2),  # reopened
    (_pdp_deactivated, lambda log: log.count("AT+QIACT=1") == 2),  # PDP context back up
    (_module_rebooted, lambda log: log.count("ATE0") == 2),  # brought up from scratch
]


@pytest.mark.parametrize(
    ("fault", "recovered"), MODULE_FAULTS, ids=["closed", "pdpdeact", "reboot"]
)
async def test_a_module_fault_leads_to_a_new_session(fault: Any, recovered: Any) -> None:
    async with (
        csms_peer("python", password=PASSWORD, boots="Accepted:1") as peer,
        network("quectel") as net,
    ):
        assert net.sim is not None
        sim = net.sim
        daemon = Daemon(make_config(peer.url), net.link)

        async def inject() -> None:
            fault(sim)

        async with running(daemon):
            await new_session_after(peer, daemon, inject)
        assert recovered(sim.module.log)
        assert daemon.outcomes[0].blame is Blame.LINK


@pytest.mark.parametrize("link_kind", LINKS)
async def test_a_silent_half_open_link_is_found_by_ping_and_replaced(link_kind: str) -> None:
    async with (
        csms_peer("python", password=PASSWORD, boots="Accepted:1") as peer,
        network(link_kind) as net,
    ):
        proxy = TcpProxy(peer.port)
        await proxy.start()
        url = f"ws://127.0.0.1:{proxy.port}/ocpp"
        daemon = Daemon(make_config(url, ping_interval=1, pong_timeout=1), net.link)

        async def go_silent() -> None:
            # The connection dies without a word to either end (no FIN, no RST).
            if net.sim is not None:
                net.sim.blackhole(0)
            else:
                proxy.stall_existing()

        async with running(daemon):
            await new_session_after(peer, daemon, go_silent)
        assert any("no pong" in o.reason for o in daemon.outcomes)
        assert daemon.outcomes[0].blame is Blame.LINK
        await proxy.stop()


def echo_digest(message_id: str | None, data: str | None) -> DataTransferReply:
    digest = hashlib.sha256((data or "").encode()).hexdigest()
    return DataTransferReply(DataTransferStatus.accepted, f"{len(data or '')}:{digest}")


async def test_a_60_kib_request_and_a_fragmented_one_arrive_intact() -> None:
    async with (
        csms_peer("python", password=PASSWORD, boots="Accepted:60") as peer,
        network("quectel") as net,
    ):
        vendors = DataTransferVendors()
        vendors.register("org.example.digest", echo_digest)
        daemon = Daemon(make_config(peer.url), net.link, data_transfer=vendors)
        async with running(daemon):
            await peer.wait_for(lambda _: len(statuses(peer)) == 3)
            data = "".join(chr(0x20 + (i * 7) % 0x5E) for i in range(60 * 1024)) + "é€"
            reply = await peer.call(
                "DataTransfer", {"vendorId": "org.example.digest", "data": data}
            )
            assert reply == {
                "status": "Accepted",
                "data": f"{len(data)}:{hashlib.sha256(data.encode()).hexdigest()}",
            }
            assert isinstance(peer, PythonCsms)
            body = json.dumps({"vendorId": "org.example.digest", "data": "fragmented " * 300})
            text = f'[2,"frag-1","DataTransfer",{body}]'
            await peer.send_fragmented([text[:10], text[10:2000], text[2000:]])
            reply = await peer.wait_for(lambda _: peer.reply_to("frag-1"))
        expected = "fragmented " * 300
        assert reply == [
            3,
            "frag-1",
            {
                "status": "Accepted",
                "data": f"{len(expected)}:{hashlib.sha256(expected.encode()).hexdigest()}",
            },
        ]


MALFORMED = [
    # (what the CSMS sends, the message id of the answer, the OCPP-J 1.6 error code)
    ('[2,"bad-json","DataTransfer",{"vendorId":', "bad-json", "FormationViolation"),
    ("this is not JSON at all", "-1", "FormationViolation"),
    ('{"an": "object"}', "-1", "FormationViolation"),
    ('[2,"no-payload","DataTransfer"]', "no-payload", "FormationViolation"),
    ('[2,"wrong-type","DataTransfer",{"vendorId":42}]', "wrong-type", "TypeConstraintViolation"),
    ('[2,"missing","DataTransfer",{}]', "missing", "OccurenceConstraintViolation"),
    (
        '[2,"too-long","DataTransfer",{"vendorId":"' + "v" * 256 + '"}]',
        "too-long",
        "PropertyConstraintViolation",
    ),
    ('[2,"extra","DataTransfer",{"vendorId":"x","colour":"red"}]', "extra", "FormationViolation"),
    ('[2,"not-object","DataTransfer",[1,2]]', "not-object", "FormationViolation"),
    ('[2,"unknown","FlyToTheMoon",{}]', "unknown", "NotImplemented"),
    (
        # Smart Charging is not offered by this deployment: a known action without a handler
        # (OCPP-J §4.2.3).
        '[2,"unhandled","ClearChargingProfile",{}]',
        "unhandled",
        "NotSupported",
    ),
]


@pytest.mark.parametrize(("peer_kind", "link_kind"), [("python", "quectel"), ("node", "host")])
async def test_malformed_csms_requests_get_the_callerror_ocpp_j_names_and_the_session_goes_on(
    peer_kind: str, link_kind: str
) -> None:
    async with (
        csms_peer(peer_kind, password=PASSWORD, boots="Accepted:1") as peer,
        network(link_kind) as net,
    ):
        without = ["Core", "FirmwareManagement", "RemoteTrigger"]  # no Smart Charging
        config = make_config(peer.url, charge_point={"feature_profiles": without})
        daemon = Daemon(config, net.link)
        async with running(daemon):
            await peer.wait_for(lambda _: len(statuses(peer)) == 3)
            for text, message_id, code in MALFORMED:
                before = len(
                    [e for e in peer.events if e["event"] == "frame" and not e["outbound"]]
                )
                await peer.send_raw(text)

                def answered(events: list[Any], before: int = before) -> list[Any] | None:
                    inbound = [e for e in events if e["event"] == "frame" and not e["outbound"]][
                        before:
                    ]
                    for event in inbound:
                        frame = json.loads(event["text"])
                        if frame[0] == 4:
                            return frame
                    return None

                frame = await peer.wait_for(answered)
                assert frame[:3] == [4, message_id, code], text
                assert isinstance(frame[3], str) and isinstance(frame[4], dict)
            # The session is still alive and answers well-formed requests.
            assert await peer.call("DataTransfer", {"vendorId": "x"}) == {
                "status": "UnknownVendorId"
            }
            heartbeats = len(peer.calls("Heartbeat"))
            await peer.wait_for(lambda _: len(peer.calls("Heartbeat")) > heartbeats)
            # A message id used twice on one connection (OCPP-J §4.1.3: unique): answered,
            # and told as a possible replay.
            for _ in range(2):
                await peer.send_raw('[2,"used-twice","DataTransfer",{"vendorId":"x"}]')
            # Security events (whitepaper §8): the invalid ones, at most SUSPICIONS_TOLD per
            # connection however many come, and the replay.
            invalid = sum(code not in ("NotImplemented", "NotSupported") for *_, code in MALFORMED)
            told = {
                "InvalidMessages": min(invalid, SUSPICIONS_TOLD),
                "AttemptedReplayAttacks": 1,
            }

            def events(_: Any) -> dict[str, int]:
                types = [c["params"]["type"] for c in peer.calls("SecurityEventNotification")]
                return {kind: types.count(kind) for kind in told}

            await peer.wait_for(lambda e: events(e) == told)
        assert daemon.sessions_started == 1


async def test_repeated_link_failures_escalate_module_recovery_step_by_step() -> None:
    # The module's DNS cannot resolve the CSMS's name: every attempt fails at AT+QIOPEN (565),
    # evidence about the data link. (A refused connection, 566, is the CSMS's: no escalation,
    # see test_ladder.py.)
    async with network("quectel", dns_failures={"csms.test"}) as net:
        assert net.sim is not None
        config = make_config(
            "ws://csms.test:1/ocpp", reconnect_delay_min=0.01, reconnect_delay_max=0.02
        )
        daemon = Daemon(config, net.link)
        sim, log = net.sim, net.sim.module.log
        async with running(daemon), asyncio.timeout(60):
            await sim.wait_for_command("AT+CFUN=1,1")
        assert all(o.blame is Blame.LINK for o in daemon.outcomes)
        ladder = [c for c in log if c in ("AT+QIDEACT=1", "AT+CFUN=0", "AT+CFUN=1", "AT+CFUN=1,1")]
        # 3 failures: PDP re-activation; 6: radio off and on; 9: module restart.
        assert ladder[:4] == ["AT+QIDEACT=1", "AT+CFUN=0", "AT+CFUN=1", "AT+CFUN=1,1"]
        assert log.index("AT+QIDEACT=1") < log.index("AT+CFUN=0") < log.index("AT+CFUN=1,1")


async def test_a_stop_during_a_long_bring_up_ends_the_daemon_at_once() -> None:
    async with csms_peer("python", password=PASSWORD) as peer, SimulatorShell() as sim:
        sim.module.profile.registered_after = 3600.0  # no network for an hour
        link = QuectelLink(sim.path, 115200, fast(registration_timeout=600.0))
        daemon = Daemon(make_config(peer.url), link)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        async with asyncio.timeout(30):
            await sim.wait_for_command("AT+CEREG?")  # waiting for registration
            stop.set()
            await task  # does not wait out the 600 s registration timeout
        assert peer.count("connect") == 0
        assert daemon.outcomes == []


class FlakyLink(HostLink):
    """A link whose first open fails with an exception no link should raise: a bug."""

    def __init__(self) -> None:
        super().__init__(connect_timeout=5)
        self.opens = 0

    async def open(self, host: str, port: int, *, tls: bool) -> Any:
        self.opens += 1
        if self.opens == 1:
            raise RuntimeError("a bug somewhere below")
        return await super().open(host, port, tls=tls)


async def test_an_unexpected_error_is_logged_and_the_daemon_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with csms_peer("python", password=PASSWORD, boots="Accepted:60") as peer:
        daemon = Daemon(make_config(peer.url), FlakyLink())
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
        assert daemon.outcomes[0].reason == "unexpected RuntimeError: a bug somewhere below"
        assert daemon.outcomes[0].blame is Blame.DRIVER  # ours, not the module's: no recovery
        assert "unexpected failure in the OCPP session" in caplog.text


class ExhaustedLink(HostLink):
    """A link whose driver has no socket id left for ten opens in a row (a bookkeeping bug)."""

    def __init__(self) -> None:
        super().__init__(connect_timeout=5)
        self.opens = 0
        self.recoveries: list[RecoveryStep] = []

    async def open(self, host: str, port: int, *, tls: bool) -> Any:
        self.opens += 1
        if self.opens <= 10:
            raise SocketsExhausted("all 12 module sockets are held by this driver (...)")
        return await super().open(host, port, tls=tls)

    async def recover(self, step: RecoveryStep) -> None:
        self.recoveries.append(step)


async def test_a_driver_fault_is_logged_loudly_and_never_resets_the_module(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with csms_peer("python", password=PASSWORD, boots="Accepted:60") as peer:
        link = ExhaustedLink()
        daemon = Daemon(make_config(peer.url), link)
        async with running(daemon):
            await peer.wait_for(lambda _: peer.calls("BootNotification"))
        assert [o.blame for o in daemon.outcomes[:10]] == [Blame.DRIVER] * 10
        # Ten failures in a row would have reached RESTART_MODULE had they been the link's.
        assert [s for s in link.recoveries if s is not RecoveryStep.REOPEN] == []
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert any("the fault is the driver's" in r.getMessage() for r in errors)
