"""The paper engine: simulated fills against real market data; nothing goes to a trading endpoint.

One module per job (see docs/design.md for the map):

- `book`: walking an order book (market fills, with the taker fee);
- `prices`: mark and last prices (the price cache first, REST for stale symbols), the 1-minute candle cache;
- `marking`: mark to market of open positions (paper from the sweep; paper and live from the cache);
- `funding`: funding settlements at funding times;
- `liquidation`: closing positions whose mark reached the liquidation price;
- `triggers`: the exchange's trigger rule, the trigger search, and claiming orders;
- `fill_plan`: what a triggered order's fill does (pure: no database, no network);
- `fills`: writing a plan order by order, and the order books the fills need;
- `batch_fills`: writing the plans of one account with a fixed number of statements;
- `stale_intents`: paper intents a stopped process left in flight (cancelled);
- `sweep`: the sweep that runs them in order (Celery beat, command), and the stream's reaction to prices.
"""
