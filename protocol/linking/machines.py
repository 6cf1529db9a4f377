"""Linking a new device to an account: the sans-I/O handshake (PROTOCOL.md §14).

Two machines, one per side of one libp2p stream ``/smu/link/1`` (frames are
length-prefixed as in §11.1; the link string, the frames and the typed
refusals are in ``linking.wire`` and re-exported here):

* ``Approver`` — on a device already active in the account, one per link
  offer.  It owns the link secret, the expiry and the failure counter.
  ``linking.offers.Offers`` holds a node's approvers and routes streams to
  them.
* ``Joiner`` — on the new device, built from the parsed link string.

Both follow the machine contract (``core.machine``, §18).  Neither does I/O,
reads a clock or draws randomness: the caller passes ``Now`` to every entry
point, the random link id and secret (bytes from the OS), and the libp2p peer
ids that Noise authenticated.  Every entry point returns a list of outputs
(``LinkOutput``), in the order to carry them out: ``Send(peer, frame)`` a
frame on the stream to that peer, ``Hangup(peer)`` close that stream, and the
events (frozen dataclasses) to show.  Remote input never raises: the approver
answers a refused frame with ``Send`` of ``error_frame(exc)``, ``Misbehaved``
and ``Hangup``; the joiner reports ``JoinFailed`` (with ``Misbehaved`` unless
the approver itself sent ERROR) and ``Hangup``.  Local misuse still raises
(``UsageError``, or the typed ``LinkError`` where one says why).  Each
machine has the timer pair ``next_deadline()`` (monotonic seconds) and
``tick(now)``.

Approver (``smu device link`` / ``pending`` / ``approve`` / ``reject``)::

    ap = Approver(params, account_id, peer_id=my_peer, addrs=my_addrs,
                  link_id=os.urandom(8), secret=os.urandom(16), now=now)
    print(ap.offer.to_text(), ap.offer.to_uri())   # the QR shows to_uri().upper()
    # first frame of a new stream: Offers.route(frame, peer, now) finds ap
    outs = ap.receive(frame, remote_peer=peer, now=now, ledger=ledger)
    # Send -> write to the stream, Hangup -> close it; ApprovalRequested:
    # ask "approve device 'laptop' <fp>?"
    approval = ap.approve(my_keys, ledger, timestamp_ms=now.wall_ms, now=now)
    ledger.ingest(approval.event.raw)   # persist, then gossip; then approval.outputs
    ap.reject(now) / ap.connection_lost(peer, now) / ap.tick(now) at ap.next_deadline()

Joiner (``smu device join LINK [--name NAME]``)::

    offer = LinkOffer.parse(text)
    jn = Joiner(params, offer, new_keys, name, own_peer=my_peer,
                remote_peer=peer_dialled, now=now)
    outs = jn.start(now)          # [Send(JOIN)]
    outs = jn.receive(frame, now) # [ConfirmRequired(account, code)]: ask the user
    outs = jn.confirm(now)        # or jn.decline(now)
    outs = jn.receive(frame, now) # [Joined(account, events, ...), Send(DONE), Hangup]:
                                  # ingest the events before sending DONE
    jn.tick(now) at jn.next_deadline()  # [JoinFailed(LinkTimeoutError), Hangup]

History: the approver's ``LinkCompleted`` event is the hook where the node
starts sending history, as ``messaging.HistoryBundle`` contents wrapped for
the new device only (§14.9).
"""

# The machines live in approver.py and joiner.py, what they report in
# reports.py; this module gathers them and the wire names in one place.

from __future__ import annotations

from protocol.core.machine import Hangup, Misbehaved, Now, Send
from protocol.linking.approver import Approver, ApproverState
from protocol.linking.joiner import Joiner, JoinerState
from protocol.linking.reports import (
    AccountInfo,
    Approval,
    ApprovalRequested,
    ConfirmRequired,
    DeviceSummary,
    JoinAborted,
    Joined,
    JoinFailed,
    JoinRequest,
    JoinRequested,
    LinkCompleted,
    LinkEvent,
    LinkExpired,
    LinkOutput,
    confirmation_code,
    refusal,
)
from protocol.linking.wire import (
    ANSWER_TIMEOUT_MS,
    APPROVAL_TIMEOUT_MS,
    APPROVAL_WINDOW_MS,
    APPROVER_BOUND_MAX_BYTES,
    CHECKSUM_BYTES,
    CLOCK_SKEW_MS,
    CODE_DIGITS,
    D_LINK_ACCEPT,
    D_LINK_CHECKSUM,
    D_LINK_CODE,
    D_LINK_JOIN,
    D_LINK_TRANSCRIPT,
    FRAME_VERSION,
    LINK_ID_BYTES,
    LINK_SECRET_BYTES,
    LINK_TTL_MS,
    LINK_VERSION,
    MAC_BYTES,
    MAX_ADDR_BYTES,
    MAX_ADDRS,
    MAX_ERROR_CODE_BYTES,
    MAX_FAILURES,
    MAX_LINK_CHARS,
    MAX_LINK_EVENTS,
    MAX_NETWORK_ID_BYTES,
    MAX_PEER_ID_BYTES,
    PROTOCOL_ID,
    TEXT_PREFIX,
    URI_PREFIX,
    AcceptFrame,
    ApprovedFrame,
    ConfirmFrame,
    DeviceKnownError,
    DoneFrame,
    ErrorFrame,
    Frame,
    FrameType,
    JoinFrame,
    LinkBurntError,
    LinkDeclinedError,
    LinkError,
    LinkExpiredError,
    LinkMacError,
    LinkOffer,
    LinkRejectedError,
    LinkTimeoutError,
    LinkUsedError,
    UnexpectedFrameError,
    UnknownLinkError,
    WrongPeerError,
    decode_frame,
    encode_frame,
    error_frame,
    error_from_code,
    joiner_bound_max_bytes,
    link_id_of,
)

__all__ = [
    "ANSWER_TIMEOUT_MS",
    "APPROVAL_TIMEOUT_MS",
    "APPROVAL_WINDOW_MS",
    "APPROVER_BOUND_MAX_BYTES",
    "CHECKSUM_BYTES",
    "CLOCK_SKEW_MS",
    "CODE_DIGITS",
    "D_LINK_ACCEPT",
    "D_LINK_CHECKSUM",
    "D_LINK_CODE",
    "D_LINK_JOIN",
    "D_LINK_TRANSCRIPT",
    "FRAME_VERSION",
    "LINK_ID_BYTES",
    "LINK_SECRET_BYTES",
    "LINK_TTL_MS",
    "LINK_VERSION",
    "MAC_BYTES",
    "MAX_ADDRS",
    "MAX_ADDR_BYTES",
    "MAX_ERROR_CODE_BYTES",
    "MAX_FAILURES",
    "MAX_LINK_CHARS",
    "MAX_LINK_EVENTS",
    "MAX_NETWORK_ID_BYTES",
    "MAX_PEER_ID_BYTES",
    "PROTOCOL_ID",
    "TEXT_PREFIX",
    "URI_PREFIX",
    "AcceptFrame",
    "AccountInfo",
    "Approval",
    "ApprovalRequested",
    "ApprovedFrame",
    "Approver",
    "ApproverState",
    "ConfirmFrame",
    "ConfirmRequired",
    "DeviceKnownError",
    "DeviceSummary",
    "DoneFrame",
    "ErrorFrame",
    "Frame",
    "FrameType",
    "Hangup",
    "JoinAborted",
    "JoinFailed",
    "JoinFrame",
    "JoinRequest",
    "JoinRequested",
    "Joined",
    "Joiner",
    "JoinerState",
    "LinkBurntError",
    "LinkCompleted",
    "LinkDeclinedError",
    "LinkError",
    "LinkEvent",
    "LinkExpired",
    "LinkExpiredError",
    "LinkMacError",
    "LinkOffer",
    "LinkOutput",
    "LinkRejectedError",
    "LinkTimeoutError",
    "LinkUsedError",
    "Misbehaved",
    "Now",
    "Send",
    "UnexpectedFrameError",
    "UnknownLinkError",
    "WrongPeerError",
    "confirmation_code",
    "decode_frame",
    "encode_frame",
    "error_frame",
    "error_from_code",
    "joiner_bound_max_bytes",
    "link_id_of",
    "refusal",
]
