"""The answers OCPP prescribes for a feature profile this charge point does not offer.

A CSMS request whose profile is disabled (or not implemented) is answered as the OCTT cases
for an unsupported profile expect: Reservation refuses with ``Rejected`` (TC_048_4_CS,
TC_050_4_CS: "The Charge Point does NOT support the Reservation feature profile"). Requests of
other disabled profiles have no handler at all, so the charge point answers the CallError
NotSupported (OCPP-J 1.6 §4.2.3: a known action it does not support).
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, CancelReservationStatus, ReservationStatus


class ReservationNotSupported:
    @on(Action.reserve_now)  # type: ignore[untyped-decorator]
    def _on_reserve_now(self, **_: Any) -> call_result.ReserveNow:
        return call_result.ReserveNow(ReservationStatus.rejected)

    @on(Action.cancel_reservation)  # type: ignore[untyped-decorator]
    def _on_cancel_reservation(self, reservation_id: int) -> call_result.CancelReservation:
        # No reservation is ever made, so none with this id exists (§5.1).
        return call_result.CancelReservation(CancelReservationStatus.rejected)
