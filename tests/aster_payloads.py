"""Reply payloads shaped as the AsterDEX docs publish them (ASTER_API.md sections 2-4)."""

EXCHANGE_INFO = {
    "exchangeFilters": [],
    "rateLimits": [
        {"interval": "MINUTE", "intervalNum": 1, "limit": 2400, "rateLimitType": "REQUEST_WEIGHT"},
        {"interval": "MINUTE", "intervalNum": 1, "limit": 1200, "rateLimitType": "ORDERS"},
    ],
    "serverTime": 1565613908500,
    "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": 0}],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "pair": "BTCUSDT",
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1598252400000,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": 1,
            "quantityPrecision": 3,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.15",
            "liquidationFee": "0.010000",
            "marketTakeBound": "0.30",
            "filters": [
                {"filterType": "PRICE_FILTER", "maxPrice": "1000000", "minPrice": "0.1", "tickSize": "0.1"},
                {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": "0.001", "stepSize": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": "0.001", "stepSize": "0.001"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 100},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.1500",
                    "multiplierDown": "0.8500",
                    "multiplierDecimal": 4,
                },
            ],
            "OrderType": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "HIDDEN"],
        },
        {
            # The spelling ccxt observed: orderTypes and minNotional; no MARKET_LOT_SIZE.
            "symbol": "DOGEUSDT",
            "status": "TRADING",
            "filters": [
                {"filterType": "PRICE_FILTER", "maxPrice": "300", "minPrice": "0.00001", "tickSize": "0.00001"},
                {"filterType": "LOT_SIZE", "maxQty": "10000000", "minQty": "1", "stepSize": "1"},
                {"filterType": "MIN_NOTIONAL", "minNotional": "5.0"},
            ],
            "orderTypes": ["LIMIT", "MARKET"],
            "liquidationFee": "0.015",
        },
        {"symbol": "OLDUSDT", "status": "SETTLING", "filters": []},
    ],
    "timezone": "UTC",
}

DEPTH = {
    "lastUpdateId": 1027024,
    "E": 1589436922972,
    "T": 1589436922959,
    "bids": [["64999.5", "0.5"], ["64998.5", "0.75"]],
    "asks": [["65000.5", "0.5"], ["65001.5", "0.75"]],
}

PREMIUM_INDEX = {
    "symbol": "BTCUSDT",
    "markPrice": "65000.10000000",
    "indexPrice": "65001.00000000",
    "estimatedSettlePrice": "65000.5",
    "lastFundingRate": "0.00010000",
    "interestRate": "0.00010000",
    "nextFundingTime": 1597392000000,
    "time": 1597370495002,
}

KLINES = [
    [
        1499040000000,
        "0.01634790",
        "0.80000000",
        "0.01575800",
        "0.01577100",
        "148976.11427815",
        1499644799999,
        "2434.19055334",
        308,
        "1756.87402397",
        "28.46694368",
        "17928899.62484339",
    ],
]

ORDER_FILLED = {
    "clientOrderId": "entry-1",
    "cumQty": "0.010",
    "cumQuote": "650.005",
    "executedQty": "0.010",
    "orderId": 22542179,
    "avgPrice": "65000.50000",
    "origQty": "0.010",
    "price": "0",
    "reduceOnly": False,
    "side": "BUY",
    "positionSide": "BOTH",
    "status": "FILLED",
    "stopPrice": "0",
    "closePosition": False,
    "symbol": "BTCUSDT",
    "timeInForce": "GTC",
    "type": "MARKET",
    "origType": "MARKET",
    "updateTime": 1566818724722,
    "workingType": "CONTRACT_PRICE",
    "priceProtect": False,
}

ORDER_STOP_NEW = {
    **ORDER_FILLED,
    "clientOrderId": "sl-1",
    "orderId": 22542180,
    "status": "NEW",
    "type": "STOP_MARKET",
    "origType": "STOP_MARKET",
    "side": "SELL",
    "executedQty": "0",
    "cumQuote": "0",
    "avgPrice": "0.00000",
    "stopPrice": "60000",
    "closePosition": True,
    "reduceOnly": True,
    "workingType": "MARK_PRICE",
    "time": 1566818724700,
}

POSITION_RISK = [
    {
        "entryPrice": "65000.5",
        "marginType": "isolated",
        "isAutoAddMargin": "false",
        "isolatedMargin": "130.001",
        "leverage": "5",
        "liquidationPrice": "52216.3",
        "markPrice": "65100.0",
        "maxNotionalValue": "250000",
        "positionAmt": "0.010",
        "symbol": "BTCUSDT",
        "unRealizedProfit": "0.995",
        "positionSide": "BOTH",
        "updateTime": 1625474304765,
    }
]

POSITION_RISK_RUST_SDK_SHAPE = [
    {
        "symbol": "ETHUSDT",
        "positionAmt": "-1.5",
        "entryPrice": "3500",
        "unrealizedProfit": "-3.0",
        "leverage": "10",
        "maxNotional": "100000",
        "positionSide": "BOTH",
        "updateTime": 1625474304765,
    }
]

BALANCE = [
    {
        "accountAlias": "SgsR",
        "asset": "USDT",
        "balance": "122607.35137903",
        "crossWalletBalance": "23.72469206",
        "crossUnPnl": "0.00000000",
        "availableBalance": "23.72469206",
        "maxWithdrawAmount": "23.72469206",
        "marginAvailable": True,
        "updateTime": 1617939110373,
    }
]

USER_TRADES = [
    {
        "buyer": False,
        "commission": "-0.07819010",
        "commissionAsset": "USDT",
        "id": 698759,
        "maker": False,
        "orderId": 25851813,
        "price": "7819.01",
        "qty": "0.002",
        "quoteQty": "15.63802",
        "realizedPnl": "-0.91539999",
        "side": "SELL",
        "positionSide": "BOTH",
        "symbol": "BTCUSDT",
        "time": 1569514978020,
    }
]

LEVERAGE_BRACKET = {
    "symbol": "ETHUSDT",
    "brackets": [
        {
            "bracket": 2,
            "initialLeverage": 50,
            "notionalCap": 100000,
            "notionalFloor": 10000,
            "maintMarginRatio": 0.01,
            "cum": 65,
        },
        {
            "bracket": 1,
            "initialLeverage": 75,
            "notionalCap": 10000,
            "notionalFloor": 0,
            "maintMarginRatio": 0.0065,
            "cum": 0,
        },
    ],
}
