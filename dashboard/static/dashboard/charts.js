// Equity curve and daily realized PnL, from GET /api/accounts/{id}/equity/ and /pnl/.
import { AreaSeries, HistogramSeries, createChart } from "./vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { allPages, api } from "./api.js";

const DAY_MS = 24 * 3600 * 1000;
// Range -> how far back and the API's bucket size (at most ~1500 points a range).
export const RANGES = {
  day: { ms: DAY_MS, interval: "1m" },
  week: { ms: 7 * DAY_MS, interval: "1h" },
  month: { ms: 30 * DAY_MS, interval: "1h" },
};

const CHART_OPTIONS = {
  autoSize: true,
  layout: { background: { color: "transparent" }, textColor: "#c9d1d9", fontSize: 12 },
  grid: { vertLines: { color: "rgba(139,148,158,0.12)" }, horzLines: { color: "rgba(139,148,158,0.12)" } },
  rightPriceScale: { borderVisible: false },
  timeScale: { borderVisible: false, timeVisible: true, secondsVisible: false },
};

export class EquityCharts {
  constructor(equityNode, pnlNode) {
    this.equityNode = equityNode;
    this.pnlNode = pnlNode;
    this.equityChart = createChart(equityNode, CHART_OPTIONS);
    this.equitySeries = this.equityChart.addSeries(AreaSeries, {
      lineColor: "#58a6ff",
      topColor: "rgba(88,166,255,0.35)",
      bottomColor: "rgba(88,166,255,0.02)",
      lineWidth: 2,
      priceFormat: { type: "price", precision: 2, minMove: 0.01 },
    });
    this.pnlChart = createChart(pnlNode, { ...CHART_OPTIONS, timeScale: { ...CHART_OPTIONS.timeScale, timeVisible: false } });
    this.pnlSeries = this.pnlChart.addSeries(HistogramSeries, { priceLineVisible: false, priceFormat: { type: "price", precision: 2, minMove: 0.01 } });
  }

  async load(accountId, rangeName) {
    const range = RANGES[rangeName];
    const now = Date.now();
    const from = new Date(now - range.ms).toISOString();
    const snapshots = await allPages(`accounts/${accountId}/equity/`, { interval: range.interval, from, limit: 1000 });
    const points = snapshots.map((s) => ({ time: Math.floor(Date.parse(s.taken_at) / 1000), value: Number(s.equity) }));
    this.equitySeries.setData(points);
    this.equityChart.timeScale().fitContent();
    this.equityNode.dataset.points = String(points.length);
    // A day has one bar at most: show the week's days then.
    const pnlFrom = new Date(now - Math.max(range.ms, RANGES.week.ms)).toISOString().slice(0, 10) + "T00:00:00Z";
    const days = await api(`accounts/${accountId}/pnl/`, { params: { from: pnlFrom } });
    const bars = days.map((d) => ({
      time: d.day,
      // net = realized - fees - funding: what the day added to the wallet.
      value: Number(d.net),
      color: Number(d.net) >= 0 ? "#3fb950" : "#f85149",
    }));
    this.pnlSeries.setData(bars);
    this.pnlChart.timeScale().fitContent();
    this.pnlNode.dataset.points = String(bars.length);
    return { points: points.length, bars: bars.length };
  }
}
