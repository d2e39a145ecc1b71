"""The general path: h11 reads the requests the relay does not handle.

``Expect: 100-continue``, HTTP/1.0, obs-fold, bare LF inside the fields, other transfer codings,
repeated ``Content-Length``: rare shapes, so h11's cost does not matter here (h11-mypyc when
installed, public API only). h11 parses the request and the proxy forwards its canonical form
(``HTTP/1.1``, end-to-end fields as sent, one framing field) through the same ``Exchange`` as
the relay path, so hooks, pooling and failure handling are the same for both. The answer comes
back as bytes; h11 reads them again and frames them for this client (close-delimited for
HTTP/1.0, whose clients cannot take chunks or trailers). h11 also answers ``100 Continue`` and
holds pipelined requests until the current one is answered. When h11 is idle again, the relay
reads whatever follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from fastproxy import chunks, errors, framing
from fastproxy._h11 import h11
from fastproxy.flow import PIPELINED

if TYPE_CHECKING:
    from fastproxy.downstream import DownstreamProtocol

_DROP: Final = framing.HOP_BY_HOP | {b"expect"}


class GeneralPath:
    __slots__ = ("chunked", "client", "conn", "down")

    def __init__(self, down: DownstreamProtocol) -> None:
        self.down = down
        max_head = down.server.config.max_head_bytes
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        # Reads the relayed response back into events (made per request).
        self.client: h11.Connection | None = None
        self.chunked = False

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> None:
        self.conn.receive_data(b"")
        self._process()

    def _process(self) -> None:
        conn = self.conn
        down = self.down
        try:
            while not down.closed and down.general is self:
                event = conn.next_event()
                kind = type(event)
                if kind is h11.Data:
                    data = bytes(event.data)  # type: ignore[union-attr]
                    self._body(chunks.chunk(data) if self.chunked else [data])
                elif kind is h11.Request:
                    if not self._request(event):  # type: ignore[arg-type]
                        return
                elif kind is h11.EndOfMessage:
                    if self.chunked:
                        trailers = event.headers.raw_items()  # type: ignore[union-attr]
                        self._body([chunks.last_chunk([n + b": " + v for n, v in trailers])])
                elif event is h11.NEED_DATA:
                    return
                elif event is h11.PAUSED:
                    down.flow.pause(PIPELINED)
                    return
                else:  # ConnectionClosed: the runtime closed between requests
                    if down.exchange is None:
                        down.close()
                    return
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            error_type = errors.HEADERS_TOO_LARGE if status == 431 else errors.BAD_REQUEST
            down.answer_error(status, error_type, f"malformed HTTP request: {exc}")

    def _request(self, request: h11.Request) -> bool:
        down = self.down
        target = request.target
        if request.method == b"CONNECT" or not target.startswith(b"/"):
            down.answer_error(400, errors.NOT_A_PROXY, framing.NOT_A_PROXY.message)
            return False
        if len(target) > framing.MAX_TARGET:
            down.answer_error(*framing.TOO_LONG)
            return False
        fields = request.headers.raw_items()
        names = [name.lower() for name, _ in fields]
        if names.count(b"host") != 1:
            down.answer_error(400, errors.BAD_REQUEST, "a request needs exactly one Host field")
            return False
        if b"transfer-encoding" in names and b"content-length" in names:
            # h11 reads such a request by its Transfer-Encoding; forwarding both fields would
            # let the next hop read it differently (request smuggling). Never forward it.
            down.answer_error(
                400, errors.BAD_REQUEST, "both Transfer-Encoding and Content-Length in a request"
            )
            return False
        drop = _DROP
        if b"connection" in names:
            tokens = {
                t.strip(b" \t").lower()
                for name, value in fields
                if name.lower() == b"connection"
                for t in value.split(b",")
            }
            drop = drop | framing.named_by_connection(tokens)
        # Fields in order and case as sent, framing fields included (h11 has checked them);
        # equal repeats of Content-Length, which h11 accepts, go on as one.
        lines = [request.method + b" " + target + b" HTTP/1.1"]
        length_seen = False
        for (name, value), low in zip(fields, names, strict=True):
            if low in drop:
                continue
            if low == b"content-length":
                if length_seen:
                    continue
                length_seen = True
            lines.append(name + b": " + value)
        self.chunked = b"transfer-encoding" in names  # h11 accepts chunked only
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        config = down.server.config
        parsed = framing.parse_request(head, config.max_head_bytes + 4096, config.max_headers)
        if not isinstance(parsed, framing.RequestHead):
            if not isinstance(parsed, framing.Refusal):
                parsed = framing.Refusal(400, errors.BAD_REQUEST, "cannot forward this request")
            down.answer_error(*parsed)
            return False
        if self.conn.they_are_waiting_for_100_continue:
            out = self.conn.send(
                h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )
            if out:
                down.flow.transport.write(out)
        client = h11.Connection(h11.CLIENT, max_incomplete_event_size=config.max_head_bytes)
        client.send(h11.Request(method=request.method, target=target, headers=[(b"Host", b"x")]))
        client.send(h11.EndOfMessage())
        self.client = client
        down.begin_exchange(head, parsed)
        return True

    def _body(self, parts: list[bytes]) -> None:
        exchange = self.down.exchange
        if exchange is not None:
            exchange.request_data(parts[0] if len(parts) == 1 else b"".join(parts))

    def response_parts(self, parts: list[bytes]) -> None:
        """Bytes the exchange relays to the runtime: framed again by h11 for this client."""
        client = self.client
        down = self.down
        if client is None:
            return
        out: list[bytes] = []
        try:
            for part in parts:
                client.receive_data(part)
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                kind = type(event)
                if kind is h11.Response or kind is h11.Data or kind is h11.EndOfMessage:
                    data = self.conn.send(event)  # type: ignore[arg-type]
                    if data:
                        out.append(data)
                    if kind is h11.EndOfMessage:
                        break
        except h11.ProtocolError:
            # The response cannot be expressed to this client (e.g. trailers to HTTP/1.0).
            down.abort()
            return
        transport = down.flow.transport
        if out and not transport.is_closing():
            transport.writelines(out)

    def exchange_over(self, keep: bool) -> None:
        self.client = None
        down = self.down
        conn = self.conn
        if not keep or down.server.draining:
            down.close()
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            leftover, closed = conn.trailing_data
            down.flow.resume(PIPELINED)
            if closed:
                down.eof = True
            down.general_over(bytes(leftover))
            return
        down.close()  # Connection: close, HTTP/1.0, or the runtime half-closed

    def can_answer(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)
