"""Event strategy as a plain backtrader Strategy: buy after strongly positive news, exit after N sessions
or on negative news.

`next()` runs after session D closes and its orders fill at D+1's open, so row D of a panel built with
the 15:00 cutoff (news up to D's close) enters at the first open after the news. With the default 09:30
cutoff the entry is one session later than it could be, never earlier.

VECTOR_FAMILY lets `gptquant backtest --sweep CONFIG --engine vector` replay it on arrays
(gptquant.backtest.vector.news_event); its sweep's cross-check against this class says when they part.
"""
import backtrader as bt

VECTOR_FAMILY = "news_event"


class NewsEvent(bt.Strategy):
    params = (
        ("column", "sentiment"),
        ("enter_above", 0.5),
        ("exit_below", -0.2),
        ("hold_sessions", 5),
        ("weight", 0.1),
    )

    def start(self):
        self.entered = {}  # feed -> len(self) when the entry filled

    def notify_order(self, order):
        if order.status == order.Completed and order.isbuy():
            self.entered[order.data] = len(self)
        elif order.status in (order.Completed, order.Partial, order.Canceled) and not order.isbuy():
            if not self.getposition(order.data).size:
                self.entered.pop(order.data, None)

    def next(self):
        for feed in self.datas:
            score = getattr(feed, self.p.column)[0]
            held = self.getposition(feed).size
            if held:
                since = self.entered.get(feed)
                if score <= self.p.exit_below or (since is not None and len(self) - since >= self.p.hold_sessions):
                    self.close(data=feed)
            elif score >= self.p.enter_above and not feed.suspended[0]:
                value = self.broker.getvalue() * self.p.weight
                shares = int(value / feed.close[0] / 100) * 100
                if shares:
                    self.buy(data=feed, size=shares)
