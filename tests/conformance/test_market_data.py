"""Market data (ASTER_API.md §2): public routes, V1 and V3 paths, documented shapes and errors."""

import pytest

from tests.conformance.conftest import assert_shape, is_int

PREFIXES = ("/fapi/v1", "/fapi/v3")  # §2: "the V3 doc lists the same endpoints under /fapi/v3/"
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_ping_and_time(venue, prefix):
    assert venue.public("GET", f"{prefix}/ping").body == {}
    reply = venue.public("GET", f"{prefix}/time")
    assert reply.status == 200 and is_int(reply.body["serverTime"])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_exchange_info_symbols_and_filters(venue, prefix):
    info = venue.public("GET", f"{prefix}/exchangeInfo").body
    assert info["timezone"] == "UTC" and is_int(info["serverTime"])
    assert {"REQUEST_WEIGHT", "ORDERS"} <= {r["rateLimitType"] for r in info["rateLimits"]}
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert_shape(btc, strings=("symbol", "pair", "contractType", "status", "baseAsset", "quoteAsset", "marginAsset"))
    assert btc["contractType"] == "PERPETUAL" and is_int(btc["pricePrecision"]) and is_int(btc["quantityPrecision"])
    assert "OrderType" in btc or "orderTypes" in btc  # §2: the sample spells it OrderType; ccxt saw orderTypes
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert_shape(filters["PRICE_FILTER"], decimals=("minPrice", "maxPrice", "tickSize"))
    assert_shape(filters["LOT_SIZE"], decimals=("minQty", "maxQty", "stepSize"))
    assert_shape(filters["MARKET_LOT_SIZE"], decimals=("minQty", "maxQty", "stepSize"))
    assert "notional" in filters["MIN_NOTIONAL"] or "minNotional" in filters["MIN_NOTIONAL"]
    assert "leverage" not in str(filters).lower()  # §0.6: no max-leverage field in exchangeInfo


@pytest.mark.parametrize("limit", [5, 10, 20, 50, 100, 500, 1000])
def test_depth_shape_and_order(venue, limit):
    book = venue.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=limit).body
    assert_shape(book, ints=("lastUpdateId", "E", "T"))
    assert 0 < len(book["bids"]) <= limit and 0 < len(book["asks"]) <= limit
    assert all(isinstance(p, str) and isinstance(q, str) for p, q in book["bids"] + book["asks"])
    bids, asks = [float(p) for p, _ in book["bids"]], [float(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


@pytest.mark.assumption
def test_depth_with_an_undocumented_limit_is_refused(venue):
    """ASSUMPTION: a limit outside {5, …, 1000} is refused with -1130 (the docs list the values only)."""
    reply = venue.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=7)
    assert reply.status == 400 and reply.code == -1130


@pytest.mark.parametrize(
    "path", ["depth", "ticker/price", "ticker/bookTicker", "ticker/24hr", "premiumIndex", "trades"]
)
def test_unknown_symbol_is_bad_symbol(venue, path):
    reply = venue.public("GET", f"/fapi/v1/{path}", symbol="NOPEUSDT")
    assert reply.status == 400 and reply.code == -1121 and isinstance(reply.body["msg"], str)


def test_ticker_price_one_and_all(venue):
    one = venue.public("GET", "/fapi/v1/ticker/price", symbol="BTCUSDT").body
    assert_shape(one, strings=("symbol",), decimals=("price",), ints=("time",))
    every = venue.public("GET", "/fapi/v1/ticker/price").body
    assert isinstance(every, list) and {"BTCUSDT", "ETHUSDT"} <= {t["symbol"] for t in every}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_book_ticker(venue, prefix):
    one = venue.public("GET", f"{prefix}/ticker/bookTicker", symbol="ETHUSDT").body
    assert_shape(one, strings=("symbol",), decimals=("bidPrice", "bidQty", "askPrice", "askQty"), ints=("time",))
    assert float(one["bidPrice"]) < float(one["askPrice"])
    assert isinstance(venue.public("GET", f"{prefix}/ticker/bookTicker").body, list)


@pytest.mark.assumption
@pytest.mark.parametrize("prefix", PREFIXES)
def test_ticker_24hr(venue, prefix):
    """ASSUMPTION: the 24hr fields are Binance's (the Aster docs name the route and its weights only)."""
    one = venue.public("GET", f"{prefix}/ticker/24hr", symbol="BTCUSDT").body
    assert_shape(
        one,
        strings=("symbol",),
        decimals=("priceChange", "priceChangePercent", "lastPrice", "openPrice", "highPrice", "lowPrice", "volume"),
        ints=("openTime", "closeTime", "count"),
    )
    assert float(one["lowPrice"]) <= float(one["lastPrice"]) <= float(one["highPrice"])
    every = venue.public("GET", f"{prefix}/ticker/24hr").body
    assert isinstance(every, list) and len(every) >= 2


def test_premium_index(venue):
    one = venue.public("GET", "/fapi/v1/premiumIndex", symbol="BTCUSDT").body
    assert_shape(
        one,
        strings=("symbol",),
        decimals=("markPrice", "indexPrice", "estimatedSettlePrice", "lastFundingRate", "interestRate"),
        ints=("nextFundingTime", "time"),
    )
    assert isinstance(venue.public("GET", "/fapi/v1/premiumIndex").body, list)


def test_funding_rate_history(venue):
    rows = venue.public("GET", "/fapi/v1/fundingRate", symbol="BTCUSDT", limit=3).body
    assert len(rows) == 3
    for row in rows:
        assert_shape(row, strings=("symbol",), decimals=("fundingRate",), ints=("fundingTime",))
    times = [r["fundingTime"] for r in rows]
    assert times == sorted(times)  # §1: ascending, oldest first


@pytest.mark.assumption
@pytest.mark.parametrize("prefix", PREFIXES)
def test_funding_info_per_symbol(venue, prefix):
    """ASSUMPTION: an object when `symbol` is given, an array without (the docs show one item)."""
    every = venue.public("GET", f"{prefix}/fundingInfo").body
    assert isinstance(every, list)
    for item in every:
        assert_shape(
            item,
            strings=("symbol",),
            decimals=("interestRate",),
            ints=("time", "fundingIntervalHours"),
            numbers=("fundingFeeCap", "fundingFeeFloor"),  # numbers, not strings (§2)
        )
    hours = {i["symbol"]: i["fundingIntervalHours"] for i in every}
    assert hours["BTCUSDT"] == 8 and hours["ASTERUSDT"] == 4  # §6: 8 by default, 4 on ASTERUSDT
    premium = venue.public("GET", f"{prefix}/premiumIndex", symbol="ASTERUSDT").body
    assert premium["nextFundingTime"] % (4 * 3_600_000) == 0


@pytest.mark.parametrize("interval", INTERVALS)
def test_klines_every_interval(venue, interval):
    rows = venue.public("GET", "/fapi/v1/klines", symbol="BTCUSDT", interval=interval, limit=5).body
    assert 1 <= len(rows) <= 5
    for row in rows:
        assert is_int(row[0]) and is_int(row[6]) and all(isinstance(v, str) for v in row[1:6])
        assert float(row[3]) <= float(row[1]) <= float(row[2]) and float(row[3]) <= float(row[4]) <= float(row[2])
    opened = [r[0] for r in rows]
    assert opened == sorted(opened)


@pytest.mark.assumption
@pytest.mark.parametrize("path", ["klines", "markPriceKlines"])
def test_klines_with_an_unknown_interval_are_refused(venue, path):
    """-1120 BAD_INTERVAL (Binance's code; the Aster table does not list it). ASSUMPTION."""
    reply = venue.public("GET", f"/fapi/v1/{path}", symbol="BTCUSDT", interval="7m")
    assert reply.status == 400 and reply.code == -1120


def test_mark_price_klines(venue):
    rows = venue.public("GET", "/fapi/v1/markPriceKlines", symbol="BTCUSDT", interval="1h", limit=2).body
    assert rows and all(is_int(r[0]) for r in rows)


def test_recent_trades(venue, simulator, flat):
    venue.v1("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    rows = venue.public("GET", "/fapi/v1/trades", symbol="BTCUSDT", limit=10).body
    assert rows
    for row in rows:
        assert_shape(row, decimals=("price", "qty", "quoteQty"), ints=("id", "time"), bools=("isBuyerMaker",))
    assert venue.public("GET", "/fapi/v1/trades").code == -1102  # symbol is mandatory


def test_responses_carry_the_used_weight_header(venue):
    reply = venue.public("GET", "/fapi/v1/time")
    assert int(reply.headers["X-MBX-USED-WEIGHT-1M"]) >= 1  # §8
