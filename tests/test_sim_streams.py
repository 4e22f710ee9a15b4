"""The simulator's market-data WebSocket streams over real sockets on loopback (ASTER_WS.md §1)."""

import io
import json
import socket
import time
from decimal import Decimal
from itertools import pairwise

import pytest
import requests
from django.core.management import CommandError, call_command
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from execution.aster.simulator.exchange import SimExchange, default_symbols
from execution.aster.simulator.server import AsterSimulator
from execution.aster.simulator.streams import MAX_STREAMS
from execution.aster.streams.frames import parse_market_frame

MARK_KEYS = {"e", "E", "s", "p", "i", "P", "r", "T"}


@pytest.fixture
def simulator():
    with AsterSimulator(seed=3) as sim:
        yield sim


def recv_json(ws: ClientConnection, timeout: float = 2.0):
    return json.loads(ws.recv(timeout=timeout))


def recv_nothing(ws: ClientConnection, seconds: float) -> bool:
    try:
        ws.recv(timeout=seconds)
    except TimeoutError:
        return True
    return False


def ask(ws: ClientConnection, request) -> dict:
    """Send a control message; its reply (data frames in between are skipped)."""
    ws.send(request if isinstance(request, str) else json.dumps(request))
    while True:
        frame = recv_json(ws)
        if isinstance(frame, dict) and ("id" in frame or "code" in frame):
            return frame


def assert_closed(ws: ClientConnection) -> ConnectionClosed:
    """Read (frames already on their way are fine) until the connection turns out closed."""
    deadline = time.monotonic() + 2
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
    return closed.value


def recv_mark(ws: ClientConnection, price: str) -> dict:
    """The first mark payload at `price` (a scheduled push of the old price may come first)."""
    deadline = time.monotonic() + 2
    while True:
        payload = recv_json(ws, timeout=max(deadline - time.monotonic(), 0.01))
        if payload["p"] == price:
            return payload


def assert_mark_payload(payload: dict, symbol: str, mark: str) -> None:
    assert set(payload) == MARK_KEYS
    assert payload["e"] == "markPriceUpdate" and payload["s"] == symbol and payload["p"] == mark
    for key in ("p", "i", "P", "r"):
        assert isinstance(payload[key], str)
        Decimal(payload[key])
    assert isinstance(payload["E"], int) and isinstance(payload["T"], int) and payload["T"] > payload["E"]


# ---------------------------------------------------------------------- forms and payloads


def test_raw_stream_pushes_a_bare_mark_payload_on_a_price_change(simulator):
    with connect(simulator.ws_url + "/ws/btcusdt@markPrice") as ws:
        assert recv_json(ws)["p"] == "65000"  # the first scheduled push comes at once
        started = time.monotonic()
        simulator.exchange.set_price("BTCUSDT", Decimal("64000"))
        payload = recv_json(ws)
        assert time.monotonic() - started < 0.5  # pushed on the change, not on the 3 s schedule
        assert_mark_payload(payload, "BTCUSDT", "64000")
        assert payload["i"] == "64000"


def test_combined_stream_wraps_every_payload_with_its_stream_name(simulator):
    url = simulator.ws_url + "/stream?streams=ethusdt@bookTicker/ethusdt@aggTrade/ethusdt@markPrice@1s"
    with connect(url) as ws:
        assert recv_json(ws)["stream"] == "ethusdt@markPrice@1s"  # the first scheduled push
        simulator.exchange.set_price("ETHUSDT", Decimal("3400"))
        frames = {}
        while len(frames) < 3:
            frame = recv_json(ws)
            assert set(frame) == {"stream", "data"}
            frames[frame["stream"]] = frame["data"]
    ticker = frames["ethusdt@bookTicker"]
    assert set(ticker) == {"e", "u", "E", "T", "s", "b", "B", "a", "A"} and ticker["e"] == "bookTicker"
    assert Decimal(ticker["b"]) < Decimal("3400") < Decimal(ticker["a"]) and isinstance(ticker["u"], int)
    trade = frames["ethusdt@aggTrade"]
    assert set(trade) == {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m"}
    assert trade["e"] == "aggTrade" and trade["p"] == "3400" and trade["m"] is True  # the price fell
    assert isinstance(trade["a"], int) and isinstance(trade["T"], int) and Decimal(trade["q"]) > 0
    assert_mark_payload(frames["ethusdt@markPrice@1s"], "ETHUSDT", "3400")


def test_every_frame_parses_with_the_shared_frame_parser(simulator):
    url = simulator.ws_url + "/stream?streams=!markPrice@arr@1s/solusdt@aggTrade/solusdt@bookTicker"
    with connect(url) as ws:
        first = parse_market_frame(ws.recv(timeout=2))  # the first scheduled push
        assert first.stream == "!markPrice@arr@1s" and len(first.marks) == len(simulator.exchange.symbols)
        simulator.exchange.set_price("SOLUSDT", Decimal("140.5"))
        frames = {frame.stream: frame for frame in (parse_market_frame(ws.recv(timeout=2)) for _ in range(3))}
    assert all(frame.dropped == 0 for frame in frames.values())
    [sol] = [mark for mark in frames["!markPrice@arr@1s"].marks if mark.symbol == "SOLUSDT"]
    assert sol.mark_price == sol.index_price == Decimal("140.5") and sol.funding_rate == Decimal("0.0001")
    assert frames["solusdt@aggTrade"].last_prices[0].price == Decimal("140.5")
    ticker = frames["solusdt@bookTicker"].book_tickers[0]
    assert ticker.bid_price < Decimal("140.5") < ticker.ask_price


def test_agg_trade_only_when_the_last_price_changes(simulator):
    with connect(simulator.ws_url + "/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s") as ws:
        recv_json(ws)  # the first scheduled mark push
        # The mark moves (premium), the last price does not: a mark frame, no trade.
        simulator.exchange.set_price("BTCUSDT", Decimal("65000"), mark_premium=Decimal("0.001"))
        frame = recv_json(ws)
        assert frame["stream"] == "btcusdt@markPrice@1s" and frame["data"]["p"] == "65065"
        simulator.exchange.set_price("BTCUSDT", Decimal("65010"))
        streams = {recv_json(ws)["stream"], recv_json(ws)["stream"]}
        assert streams == {"btcusdt@aggTrade", "btcusdt@markPrice@1s"}


def test_whole_market_array_holds_every_symbol_and_one_step_is_one_push(simulator):
    url = simulator.ws_url + "/ws/!markPrice@arr@1s"
    with connect(url) as first, connect(url) as second:
        recv_json(first), recv_json(second)  # the first scheduled pushes
        simulator.exchange.step()
        marks = {s: str(sym.mark.normalize()) for s, sym in simulator.exchange.symbols.items()}

        def after_step(ws) -> str:
            """The first frame with the stepped prices (a scheduled push may come first on a busy machine)."""
            while True:
                text = ws.recv(timeout=2.0)
                if all(item["p"] == marks[item["s"]] for item in json.loads(text)):
                    return text

        text = after_step(first)
        assert after_step(second) == text  # built once, the same text for every subscriber
        payload = json.loads(text)
        assert isinstance(payload, list)
        assert {item["s"] for item in payload} == set(simulator.exchange.symbols)
        for item in payload:
            assert_mark_payload(item, item["s"], marks[item["s"]])


def test_cadence_1s_and_3s_without_price_changes(simulator):
    with connect(simulator.ws_url + "/stream?streams=!markPrice@arr@1s/!markPrice@arr") as ws:
        arrivals: dict[str, list[float]] = {"!markPrice@arr@1s": [], "!markPrice@arr": []}
        deadline = time.monotonic() + 2.6
        while time.monotonic() < deadline:
            try:
                frame = recv_json(ws, timeout=max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            arrivals[frame["stream"]].append(time.monotonic())
            assert len(frame["data"]) == len(simulator.exchange.symbols)
    one_second = arrivals["!markPrice@arr@1s"]
    assert len(one_second) == 3, one_second
    gaps = [b - a for a, b in pairwise(one_second)]
    assert all(0.85 <= gap <= 1.5 for gap in gaps), gaps
    assert len(arrivals["!markPrice@arr"]) == 1  # the next one is 3 s after the first


def test_prices_moving_every_cadence_give_one_frame_per_cadence_not_two():
    # The simulator's ticker steps every second: each step is pushed at once, and the 1 s
    # schedule, having just pushed, waits (the bench's CPU figure depends on it).
    with AsterSimulator(seed=3, tick_seconds=1.0) as sim, connect(sim.ws_url + "/ws/!markPrice@arr@1s") as ws:
        frames = 0
        deadline = time.monotonic() + 3.2
        while (left := deadline - time.monotonic()) > 0:
            try:
                ws.recv(timeout=left)
            except TimeoutError:
                break
            frames += 1
    assert 3 <= frames <= 4, frames  # the first scheduled push, then one per step


def test_event_times_never_go_backwards(simulator):
    with connect(simulator.ws_url + "/ws/solusdt@markPrice@1s") as ws:
        times = []
        for price in ("151", "152", "153"):
            simulator.exchange.set_price("SOLUSDT", Decimal(price))
            times.append(recv_json(ws)["E"])
        assert times == sorted(times)


def test_price_change_through_the_http_control_is_pushed(simulator):
    with connect(simulator.ws_url + "/ws/asterusdt@markPrice") as ws:
        recv_json(ws)  # the first scheduled push
        reply = requests.post(simulator.url + "/_sim/price", json={"symbol": "ASTERUSDT", "price": "1.3"}, timeout=5)
        assert reply.status_code == 200
        assert recv_json(ws)["p"] == "1.3"


# ---------------------------------------------------------------------- control messages


def test_subscribe_unsubscribe_list_and_properties(simulator):
    # Streams pushed on changes only, so that every frame below is caused by the test.
    with connect(simulator.ws_url + "/ws") as ws:
        assert ask(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@bookTicker"], "id": 1}) == {
            "result": None,
            "id": 1,
        }
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
            "result": ["btcusdt@aggTrade", "btcusdt@bookTicker"],
            "id": 2,
        }
        assert ask(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 3}) == {"result": False, "id": 3}
        assert ask(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 4}) == {
            "result": None,
            "id": 4,
        }
        simulator.exchange.set_price("BTCUSDT", Decimal("64500"))
        assert recv_json(ws)["e"] == "aggTrade"  # bare: not combined
        assert recv_nothing(ws, 0.3)  # no bookTicker any more
        assert ask(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}) == {"result": None, "id": 5}
        simulator.exchange.set_price("BTCUSDT", Decimal("64600"))
        frame = recv_json(ws)
        assert frame["stream"] == "btcusdt@aggTrade" and frame["data"]["p"] == "64600"
        assert ask(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 6})["id"] == 6
        simulator.exchange.set_price("BTCUSDT", Decimal("64700"))
        assert recv_nothing(ws, 0.3)


def test_combined_connection_reports_the_combined_property(simulator):
    with connect(simulator.ws_url + "/stream") as ws:
        assert ask(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 0}) == {"result": True, "id": 0}


@pytest.mark.parametrize(
    ("request_", "code", "with_id"),
    [
        ("{not json", 3, False),
        ({"method": "SET_PROPERTY", "params": ["speed", True], "id": 9}, 0, True),
        ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 10}, 1, True),
        ({"method": "GET_PROPERTY", "params": [1], "id": 11}, 2, True),
        ({"method": "GET_PROPERTY", "params": ["combined", "x"], "id": 12}, 2, True),
        ({"method": "SUBSCRIB", "params": [], "id": 13}, 2, True),
        ({"params": [], "id": 14}, 2, True),
        ({"method": "LIST_SUBSCRIPTIONS", "id": -1}, 2, False),
        ({"method": "LIST_SUBSCRIPTIONS", "id": "7"}, 2, False),
        ({"method": "LIST_SUBSCRIPTIONS"}, 2, False),
        (["SUBSCRIBE"], 2, False),
        ({"method": "SUBSCRIBE", "params": "btcusdt@markPrice", "id": 15}, 2, True),
        ({"method": "SUBSCRIBE", "params": [7], "id": 16}, 2, True),
        ({"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 17}, 2, True),
        ({"method": "SUBSCRIBE", "params": ["BTCUSDT@markPrice"], "id": 18}, 2, True),
        ({"method": "SUBSCRIBE", "params": ["nosuchusdt@markPrice"], "id": 19}, 2, True),
    ],
)
def test_malformed_control_messages_get_the_documented_error_codes(simulator, request_, code, with_id):
    with connect(simulator.ws_url + "/ws") as ws:
        reply = ask(ws, request_)
        assert reply["code"] == code and isinstance(reply["msg"], str) and reply["msg"]
        assert ("id" in reply) == with_id
        assert "result" not in reply
        # Nothing was subscribed, and the connection still answers.
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99}) == {"result": [], "id": 99}


def test_a_subscribe_with_one_unknown_name_subscribes_nothing(simulator):
    with connect(simulator.ws_url + "/ws") as ws:
        reply = ask(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@markPrice", "btcusdt@kline_1m"], "id": 1})
        assert reply["code"] == 2 and "btcusdt@kline_1m" in reply["msg"]
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2})["result"] == []


def test_at_most_200_streams_per_connection():
    exchange = SimExchange(symbols=default_symbols(60))  # 64 symbols, 4 streams each
    names = [
        f"{s.lower()}@{kind}"
        for s in exchange.symbols
        for kind in ("markPrice", "markPrice@1s", "bookTicker", "aggTrade")
    ]
    with AsterSimulator(exchange=exchange) as sim:
        with connect(sim.ws_url + "/ws") as ws:
            assert ask(ws, {"method": "SUBSCRIBE", "params": names[:MAX_STREAMS], "id": 1}) == {"result": None, "id": 1}
            assert ask(ws, {"method": "SUBSCRIBE", "params": names[:10], "id": 2})["id"] == 2  # already held: fine
            reply = ask(ws, {"method": "SUBSCRIBE", "params": [names[MAX_STREAMS]], "id": 3})
            assert reply["code"] == 2 and "200" in reply["msg"]
            assert len(ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4})["result"]) == MAX_STREAMS
        with pytest.raises(InvalidStatus) as refused:
            connect(sim.ws_url + "/stream?streams=" + "/".join(names[: MAX_STREAMS + 1]))
        assert refused.value.response.status_code == 400


def test_more_than_10_messages_a_second_closes_the_connection(simulator):
    with connect(simulator.ws_url + "/ws") as ws:
        for index in range(11):
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": index}))
        replies = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                recv_json(ws)
                replies += 1
        assert replies == 10 and closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ws/btcusdt@depth", 400),
        ("/ws/BTCUSDT@markPrice", 400),
        ("/stream?streams=btcusdt@markPrice/nosuch@markPrice", 400),
        ("/ws/" + "a" * 64, 400),  # not a live listenKey
        ("/nothing", 404),
    ],
)
def test_unknown_stream_or_path_in_the_url_refuses_the_handshake(simulator, path, status):
    with pytest.raises(InvalidStatus) as refused:
        connect(simulator.ws_url + path)
    assert refused.value.response.status_code == status


# ---------------------------------------------------------------------- faults and controls


def test_drop_every_socket_then_reconnect(simulator):
    market = connect(simulator.ws_url + "/ws/btcusdt@markPrice@1s")
    combined = connect(simulator.ws_url + "/stream?streams=!markPrice@arr@1s")
    reply = requests.post(simulator.url + "/_sim/ws/drop", json={}, timeout=5)
    assert reply.json() == {"dropped": 2}
    for ws in (market, combined):
        assert_closed(ws)
        ws.close()
    with connect(simulator.ws_url + "/ws/btcusdt@markPrice@1s") as again:
        simulator.exchange.set_price("BTCUSDT", Decimal("63000"))
        recv_mark(again, "63000")
        assert simulator.drop_sockets() == 1  # the Python control does the same
        assert_closed(again)


def test_paused_streams_stay_open_but_push_nothing(simulator):
    with connect(simulator.ws_url + "/ws/btcusdt@markPrice@1s") as ws:
        recv_json(ws)  # the first scheduled push
        assert requests.post(simulator.url + "/_sim/ws/pause", json={}, timeout=5).json() == {"ok": True}
        simulator.exchange.set_price("BTCUSDT", Decimal("62000"))
        assert recv_nothing(ws, 1.2)  # neither the change nor the 1 s schedule
        assert ws.ping().wait(1)  # the connection is alive: a stale stream, not a dead one
        assert ask(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["result"] == ["btcusdt@markPrice@1s"]
        assert simulator.streams.state()["paused"] is True
        simulator.resume_streams()
        simulator.exchange.set_price("BTCUSDT", Decimal("62100"))
        recv_mark(ws, "62100")


def test_close_connections_older_than_n_seconds(simulator):
    old = connect(simulator.ws_url + "/ws/btcusdt@markPrice")
    time.sleep(0.3)
    young = connect(simulator.ws_url + "/ws/btcusdt@markPrice")
    reply = requests.post(simulator.url + "/_sim/ws/close_older", json={"seconds": 0.2}, timeout=5)
    assert reply.json() == {"closed": 1}
    closed = assert_closed(old)
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    simulator.exchange.set_price("BTCUSDT", Decimal("61000"))
    recv_mark(young, "61000")
    old.close()
    young.close()
    bad = requests.post(simulator.url + "/_sim/ws/close_older", json={"seconds": "x"}, timeout=5)
    assert bad.status_code == 400


def test_inject_a_raw_frame_to_every_market_socket(simulator):
    with connect(simulator.ws_url + "/ws") as raw, connect(simulator.ws_url + "/stream") as combined:
        reply = requests.post(
            simulator.url + "/_sim/ws/inject", json={"text": '{"e":"markPriceUpdate","p":NaN'}, timeout=5
        )
        assert reply.json() == {"sent": 2}
        assert raw.recv(timeout=2) == '{"e":"markPriceUpdate","p":NaN'
        assert combined.recv(timeout=2) == '{"e":"markPriceUpdate","p":NaN'  # verbatim, never wrapped


def test_state_reports_sockets_and_subscriptions(simulator):
    with connect(simulator.ws_url + "/stream?streams=btcusdt@markPrice/!markPrice@arr"):
        state = requests.get(simulator.url + "/_sim/ws/state", timeout=5).json()
    assert state["market_sockets"] == 1 and state["user_sockets"] == 0
    assert state["subscriptions"] == {"!markPrice@arr": 1, "btcusdt@markPrice": 1}
    assert state["url"] == simulator.ws_url


def test_a_simulator_without_websockets_refuses_the_controls():
    with AsterSimulator(ws_port=None) as sim:
        reply = requests.post(sim.url + "/_sim/ws/drop", json={}, timeout=5)
        assert reply.status_code == 400
        with pytest.raises(RuntimeError):
            sim.ws_url  # noqa: B018


def test_ws_port_is_validated():
    with pytest.raises(ValueError):
        AsterSimulator(ws_port=70000)
    with pytest.raises(CommandError):
        call_command("aster_sim", "--port", "8765", "--ws-port", "70000")
    with pytest.raises(CommandError):
        call_command("aster_sim", "--port", "8765", "--ws-port", "8765")
    with pytest.raises(CommandError):
        call_command("aster_sim", "--listen-key-seconds", "0")


def _port_pair() -> tuple[socket.socket, int]:
    """A socket holding port P + 1 while P is free (for the command's default WebSocket port)."""
    for _ in range(50):
        held = socket.create_server(("127.0.0.1", 0))
        http_port = held.getsockname()[1] - 1
        try:
            socket.create_server(("127.0.0.1", http_port)).close()
        except OSError:
            held.close()
            continue
        return held, http_port
    raise AssertionError("no free port pair")


def test_aster_sim_serves_streams_on_a_free_port_when_port_plus_one_is_busy(monkeypatch):
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("execution.management.commands.aster_sim.time.sleep", interrupt)
    held, http_port = _port_pair()
    with held:
        out, err = io.StringIO(), io.StringIO()
        call_command("aster_sim", "--port", str(http_port), "--tick-seconds", "0", stdout=out, stderr=err)
        assert f"port {http_port + 1} is busy" in err.getvalue()
        assert "WebSocket streams on ws://127.0.0.1:" in out.getvalue()
        with pytest.raises(CommandError, match="cannot start"):  # an explicit --ws-port is not replaced
            call_command("aster_sim", "--port", str(http_port), "--ws-port", str(http_port + 1), stdout=out)
