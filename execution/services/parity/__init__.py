"""Paper<->live parity: what the paper engine would have done for every live fill.

- `market_orders`: the shadow of a live market order (entry, close, flip): the book is read in a
  worker thread while the order is on the wire, walked as paper walks it (paper.book), with
  paper's taker fee. The order path calls it once, from the live adapter's execute.
- `legs`: the shadow of a TP/SL fill that arrived on the user-data stream: when paper's trigger
  rule (paper.triggers.is_triggered: the cached price or a completed minute candle) fires, and
  what paper's leg fill rule (paper.fill_plan.trigger_fill_price) fills on the book.
- `funding`: live funding (ACCOUNT_UPDATE FUNDING_FEE) against paper's funding rule.
- `report`: the figures by symbol and kind, the histogram, the calibration and the decisions
  refused by one side of a shadow pair only.

A parity failure is logged and counted (`execution_parity_failures_total`), never raised into
the path that called it.
"""
