"""Paper<->live parity: what the paper engine would have done for every live fill.

- `market_orders`: the shadow of a live market order (entry, close, flip): the book is read in a
  worker thread while the order is on the wire, walked as paper walks it (paper.book), with
  paper's taker fee. The order path calls it once, from the live adapter's execute.
- `legs`: the shadow of a TP/SL fill that arrived on the user-data stream: when and at what
  price paper's trigger rule (paper.triggers.is_crossed) fires on the cached price.
- `funding`: live funding (ACCOUNT_UPDATE FUNDING_FEE) against paper's funding rule.
- `report`: the figures by symbol and kind, the histogram, the calibration and the decisions
  refused by one side of a shadow pair only.

A parity failure is logged and counted (`execution_parity_failures_total`), never raised into
the path that called it.
"""
