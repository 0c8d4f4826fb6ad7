#!/usr/bin/python3
"""Generate realistic synthetic card transactions for the fraud example.

The data is a simulation of a card issuer's authorization stream:

* cards (customers) with habits: a home country, a few favourite merchants
  that take most of their spend, a personal mix of merchant categories, a
  typical amount per category, a daily activity rate (few heavy users, many
  light ones), a time-of-day pattern in local time that differs at weekends,
  and sometimes a trip abroad;
* merchants with a category, a channel (pos, online, atm), a country and a
  heavy-tailed (Zipf-like) popularity;
* fraud episodes on a few percent of the cards: card testing, account
  takeover and lost/stolen cards.  Every transaction of an episode is
  labelled ``is_fraud = 1``; most compromised cards are blocked some hours
  after the episode, so their legitimate activity stops;
* a small fraction of late arrivals: rows are written in arrival order and
  a few events arrive seconds to minutes after their event time.

Everything is drawn from numpy's PCG64 generators seeded by ``--seed``, with
one independent stream per stage, so the same arguments give byte-identical
output.  See README.md next to this file for the columns and the patterns.
"""

import argparse
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------
# Static world description
# --------------------------------------------------------------------------

#: Merchant categories: name, share of legitimate spend (count), median
#: amount, lognormal sigma of one amount around the card's level, share of
#: the category's merchants that are online, and whether ATMs serve it.
CATEGORIES = [
    # name          share  median sigma online
    ("grocery",     0.27,   32.0, 0.70, 0.05),
    ("restaurant",  0.18,   28.0, 0.60, 0.00),
    ("fuel",        0.10,   55.0, 0.35, 0.00),
    ("online",      0.19,   38.0, 0.90, 1.00),
    ("atm",         0.07,  100.0, 0.55, 0.00),
    ("electronics", 0.04,  140.0, 0.95, 0.45),
    ("travel",      0.03,  260.0, 0.90, 0.65),
    ("gaming",      0.06,   11.0, 0.85, 0.90),
]
CAT_NAMES = [c[0] for c in CATEGORIES]
CAT = {name: i for i, name in enumerate(CAT_NAMES)}
CAT_SHARE = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
CAT_MEDIAN = np.array([c[2] for c in CATEGORIES])
CAT_SIGMA = np.array([c[3] for c in CATEGORIES])
CAT_ONLINE = np.array([c[4] for c in CATEGORIES])

CHANNELS = ["pos", "online", "atm"]
POS, ONLINE, ATM = 0, 1, 2

#: Countries: code, UTC offset (hours, no daylight saving), share of the
#: issuer's cardholders living there, and role.  "home" countries are where
#: cardholders live; "trip" countries are holiday destinations; "risk"
#: countries are where compromised cards are typically cashed out.
COUNTRIES = [
    ("GB", 0, 0.22, "home"), ("DE", 1, 0.19, "home"), ("FR", 1, 0.15, "home"),
    ("ES", 1, 0.10, "home"), ("IT", 1, 0.09, "home"), ("NL", 1, 0.07, "home"),
    ("PL", 1, 0.06, "home"), ("IE", 0, 0.04, "home"), ("BE", 1, 0.04, "home"),
    ("SE", 1, 0.04, "home"),
    ("PT", 0, 0.0, "trip"), ("GR", 2, 0.0, "trip"), ("HR", 1, 0.0, "trip"),
    ("TR", 3, 0.0, "trip"), ("TH", 7, 0.0, "trip"), ("AE", 4, 0.0, "trip"),
    ("US", -5, 0.0, "trip"),
    ("BR", -3, 0.0, "risk"), ("NG", 1, 0.0, "risk"), ("RO", 2, 0.0, "risk"),
    ("UA", 2, 0.0, "risk"), ("RU", 3, 0.0, "risk"), ("CN", 8, 0.0, "risk"),
    ("ID", 7, 0.0, "risk"), ("MX", -6, 0.0, "risk"), ("VN", 7, 0.0, "risk"),
]
CTRY_CODES = [c[0] for c in COUNTRIES]
CTRY_OFFSET_H = np.array([c[1] for c in COUNTRIES])
CTRY_HOME_SHARE = np.array([c[2] for c in COUNTRIES])
HOME_IDX = np.array([i for i, c in enumerate(COUNTRIES) if c[3] == "home"])
TRIP_IDX = np.array([i for i, c in enumerate(COUNTRIES) if c[3] != "risk"])
RISK_IDX = np.array([i for i, c in enumerate(COUNTRIES) if c[3] == "risk"]
                    + [CTRY_CODES.index("US")])

#: Relative activity by local hour of day (0..23), weekdays and weekends.
HOURLY_WEEKDAY = np.array([0.30, 0.18, 0.10, 0.08, 0.08, 0.18, 0.60, 1.50,
                           2.50, 3.00, 3.20, 3.60, 4.50, 4.20, 3.60, 3.50,
                           3.80, 4.60, 5.00, 4.60, 3.80, 2.80, 1.60, 0.80])
HOURLY_WEEKEND = np.array([0.80, 0.60, 0.40, 0.20, 0.12, 0.10, 0.20, 0.50,
                           1.20, 2.20, 3.20, 4.00, 4.60, 4.60, 4.20, 4.00,
                           4.00, 4.30, 4.80, 5.00, 4.60, 3.80, 2.60, 1.50])

#: Fraud types, in the order of the internal ``fraud_type`` code (0 = none).
FRAUD_TYPES = ["none", "card_testing", "account_takeover", "lost_stolen"]

MS_PER_S = 1000
MS_PER_MIN = 60 * MS_PER_S
MS_PER_H = 60 * MS_PER_MIN
MS_PER_DAY = 24 * MS_PER_H


@dataclass
class Config:
    """What to simulate (from the command line)."""
    cards: int = 5000
    days: int = 30
    start_ms: int = 0           # epoch milliseconds of the first day, 00:00Z
    start_weekday: int = 0      # 0 = Monday
    seed: int = 7
    fraud_scale: float = 1.0    # multiplies every fraud episode rate
    late_share: float = 0.004   # share of rows that arrive late

    @property
    def end_ms(self):
        return self.start_ms + self.days * MS_PER_DAY


# Episode rates per card and day (card testing, account takeover,
# lost/stolen).  Over 30 days this compromises about 5.5% of the cards.
EPISODE_RATE_PER_DAY = {"card_testing": 0.00080,
                        "account_takeover": 0.00060,
                        "lost_stolen": 0.00050}


@dataclass
class Merchants:
    """Merchant table: one entry per merchant, indexed by merchant number."""
    category: np.ndarray    # index into CATEGORIES
    channel: np.ndarray     # POS, ONLINE or ATM
    country: np.ndarray     # index into COUNTRIES
    popularity: np.ndarray  # unnormalized, heavy tailed


@dataclass
class Cards:
    """Cardholder habits: one entry (or row) per card."""
    home: np.ndarray        # country index
    rate: np.ndarray        # expected transactions per weekday
    weekend: np.ndarray     # weekend activity multiplier
    shift_h: np.ndarray     # chronotype: hours added to the usual pattern
    cat_cum: np.ndarray     # (cards, categories) cumulative category mix
    level: np.ndarray       # (cards, categories) typical amount
    favourites: np.ndarray  # (cards, K) merchant numbers
    p_fav: np.ndarray       # probability a payment goes to a favourite
    trip_country: np.ndarray  # country index, -1 when no trip
    trip_start: np.ndarray    # first trip day
    trip_end: np.ndarray      # day after the trip


@dataclass
class Txns:
    """A set of transactions as parallel arrays."""
    card: np.ndarray
    ts: np.ndarray          # event time, epoch milliseconds (int64)
    merchant: np.ndarray
    cents: np.ndarray       # amount in cents (int64)
    fraud: np.ndarray       # index into FRAUD_TYPES

    @staticmethod
    def concat(parts):
        return Txns(*(np.concatenate([getattr(p, f) for p in parts])
                      for f in ("card", "ts", "merchant", "cents", "fraud")))

    def take(self, idx):
        return Txns(self.card[idx], self.ts[idx], self.merchant[idx],
                    self.cents[idx], self.fraud[idx])


# --------------------------------------------------------------------------
# Small sampling helpers
# --------------------------------------------------------------------------

def sample_rows(rng, cum, rows):
    """Draw one index per entry of ``rows`` from per-row cumulative weights.

    ``cum`` is a (R, K) array of cumulative probabilities whose last column
    is 1; ``rows`` selects the row each draw uses.
    """
    u = rng.random(len(rows))
    return (u[:, None] >= cum[rows]).sum(axis=1).clip(max=cum.shape[1] - 1)


def episode_layout(counts):
    """For episodes with ``counts`` transactions each, return the episode
    number and the position inside its episode of every transaction."""
    ep = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    pos = np.arange(len(ep)) - first[ep]
    return ep, pos


def cumsum_within(ep, values):
    """Cumulative sum of ``values`` restarting at each episode (``ep`` is
    sorted); the first element of each episode keeps its own value."""
    if len(ep) == 0:
        return np.zeros(0, np.asarray(values).dtype)
    total = np.cumsum(values)
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    before = np.repeat(total[starts] - values[starts],
                       np.diff(np.r_[starts, len(ep)]))
    return total - before


def lognormal_cents(rng, median, sigma, lo=0.10, hi=None):
    """Amounts in cents, lognormal around ``median`` (arrays broadcast)."""
    x = median * np.exp(sigma * rng.standard_normal(np.shape(median)))
    x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return np.round(x * 100).astype(np.int64)


class MerchantPools:
    """Popularity-weighted sampling of merchants by country, category and
    whether they are online.  A country of -1 means anywhere."""

    def __init__(self, m):
        self.m = m
        self._cache = {}

    def _pool(self, country, cat, online):
        key = (country, cat, online)
        if key not in self._cache:
            sel = (self.m.category == cat) & ((self.m.channel == ONLINE) == online)
            if country >= 0:
                sel &= self.m.country == country
            ids = np.flatnonzero(sel)
            if len(ids) == 0:          # never happens with build_merchants
                raise RuntimeError(f"no merchant for {key}")
            w = self.m.popularity[ids]
            self._cache[key] = (ids, np.cumsum(w) / w.sum())
        return self._cache[key]

    def sample(self, rng, country, cat, online, uniform=False):
        """One merchant per entry of the (broadcast) key arrays.

        With ``uniform`` every merchant of a pool is equally likely (how
        fraudsters pick small, obscure merchants), else popularity decides.
        """
        country, cat, online = (a.ravel() for a in np.broadcast_arrays(
            np.asarray(country), np.asarray(cat), np.asarray(online, bool)))
        n = country.size
        out = np.empty(n, np.int64)
        u = rng.random(n)
        key = (country.astype(np.int64) + 1) * 64 + cat * 2 + online
        order = np.argsort(key, kind="stable")
        ks = key[order]
        if n == 0:
            return out
        bounds = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            idx = order[a:b]
            i0 = idx[0]
            ids, cum = self._pool(int(country[i0]), int(cat[i0]),
                                  bool(online[i0]))
            if uniform:
                pick = (u[idx] * len(ids)).astype(np.int64)
            else:
                pick = np.searchsorted(cum, u[idx], side="right")
            out[idx] = ids[np.minimum(pick, len(ids) - 1)]
        return out


# --------------------------------------------------------------------------
# The world: merchants and cards
# --------------------------------------------------------------------------

def build_merchants(rng, cfg):
    """Merchants: most in the cardholders' home countries, some in holiday
    and cash-out countries; at least one of every category and channel in
    every country; Pareto popularity (a few chains and big online shops
    take a large share of the payments)."""
    total = int(np.clip(cfg.cards // 3, 600, 60000))
    share = np.where(CTRY_HOME_SHARE > 0, CTRY_HOME_SHARE * 0.85, 0.0)
    share[CTRY_HOME_SHARE == 0] = 0.15 / np.sum(CTRY_HOME_SHARE == 0)
    # guaranteed coverage: every (country, category, channel kind)
    base_c, base_k, base_on = [], [], []
    for c in range(len(COUNTRIES)):
        for k in range(len(CATEGORIES)):
            for on in (False, True):
                if (on and CAT_ONLINE[k] > 0) or (not on and CAT_ONLINE[k] < 1):
                    base_c.append(c), base_k.append(k), base_on.append(on)
    n_extra = max(total - len(base_c), 0)
    country = np.r_[base_c, rng.choice(len(COUNTRIES), n_extra, p=share)]
    cat = np.r_[base_k, rng.choice(len(CATEGORIES), n_extra, p=CAT_SHARE)]
    online = np.r_[base_on, rng.random(n_extra) < CAT_ONLINE[cat[len(base_c):]]]
    channel = np.where(online, ONLINE, np.where(cat == CAT["atm"], ATM, POS))
    popularity = ((1.0 - rng.random(len(cat))) ** (-1 / 1.3)).clip(max=300)
    # online shops sell across borders, mostly from the big markets: the
    # reach of an online merchant shrinks outside the home and US markets
    reach = np.where(CTRY_HOME_SHARE > 0, 1.0, 0.03)
    reach[CTRY_CODES.index("US")] = 1.0
    popularity = np.where(online, popularity * reach[country], popularity)
    # shuffle so merchant numbers carry no information about the category
    perm = rng.permutation(len(cat))
    return Merchants(cat[perm].astype(np.int64), channel[perm].astype(np.int64),
                     country[perm].astype(np.int64), popularity[perm])


def build_cards(rng, cfg, pools):
    """Cardholder habits, favourites and trips (see the Cards fields)."""
    n = cfg.cards
    home_p = CTRY_HOME_SHARE[HOME_IDX] / CTRY_HOME_SHARE[HOME_IDX].sum()
    home = HOME_IDX[rng.choice(len(HOME_IDX), n, p=home_p)]
    # heavy-tailed activity: median ~1.3 per day, a few users at 8+ per day
    rate = np.exp(np.log(1.3) + 0.85 * rng.standard_normal(n)).clip(0.05, 25)
    weekend = np.exp(0.1 + 0.3 * rng.standard_normal(n))
    shift_h = rng.normal(0.0, 1.2, n)
    night_worker = rng.random(n) < 0.04        # shifted by 6-10 hours
    shift_h[night_worker] += rng.uniform(6, 10, night_worker.sum())
    mix = rng.dirichlet(CAT_SHARE * 6.0, n)          # personal category mix
    cat_cum = np.cumsum(mix, axis=1)
    cat_cum[:, -1] = 1.0
    wealth = np.exp(0.45 * rng.standard_normal(n))
    level = CAT_MEDIAN * wealth[:, None] * np.exp(
        0.25 * rng.standard_normal((n, len(CATEGORIES))))
    # favourites: K merchants drawn along the card's mix, physical ones at home
    k_fav = 8
    rows = np.repeat(np.arange(n), k_fav)
    fcat = sample_rows(rng, cat_cum, rows)
    fonline = rng.random(len(rows)) < CAT_ONLINE[fcat]
    fcountry = np.where(fonline, -1, home[rows])
    # chains are likelier favourites, but so is the shop around the corner
    favourites = np.where(
        rng.random(len(rows)) < 0.5,
        pools.sample(rng, fcountry, fcat, fonline),
        pools.sample(rng, fcountry, fcat, fonline, uniform=True)).reshape(n, k_fav)
    p_fav = rng.beta(6.0, 2.0, n)
    # one holiday for some cards (about 11% over 30 days), 2-10 days long
    has_trip = rng.random(n) < 1 - np.exp(-0.004 * cfg.days)
    trip_country = np.where(has_trip, rng.choice(TRIP_IDX, n), -1)
    trip_country = np.where(trip_country == home, CTRY_CODES.index("PT"),
                            trip_country)
    trip_len = rng.integers(2, 11, n)
    trip_start = rng.integers(0, max(cfg.days - 1, 1), n)
    return Cards(home, rate, weekend, shift_h, cat_cum, level, favourites,
                 p_fav, trip_country, trip_start, trip_start + trip_len)


# --------------------------------------------------------------------------
# Legitimate activity
# --------------------------------------------------------------------------

def legit_times(rng, cfg, cards):
    """Per card and day a Poisson number of payments at local times drawn
    from the weekday or weekend hourly pattern; returns (card, day, ts)."""
    days = np.arange(cfg.days)
    is_weekend = ((cfg.start_weekday + days) % 7) >= 5
    lam = cards.rate[:, None] * np.where(is_weekend[None, :],
                                         cards.weekend[:, None], 1.0)
    counts = rng.poisson(lam)
    card = np.repeat(np.arange(cfg.cards), counts.sum(axis=1))
    day = np.repeat(np.tile(days, cfg.cards), counts.ravel())
    wknd = is_weekend[day]
    cum_wd = np.cumsum(HOURLY_WEEKDAY) / HOURLY_WEEKDAY.sum()
    cum_we = np.cumsum(HOURLY_WEEKEND) / HOURLY_WEEKEND.sum()
    u = rng.random(len(card))
    hour = np.where(wknd, np.searchsorted(cum_we, u, side="right"),
                    np.searchsorted(cum_wd, u, side="right")).clip(max=23)
    local_ms = (hour * MS_PER_H + rng.integers(0, MS_PER_H, len(card))
                + np.round(cards.shift_h[card] * MS_PER_H).astype(np.int64))
    local_ms %= MS_PER_DAY
    ts = (cfg.start_ms + day * MS_PER_DAY + local_ms
          - CTRY_OFFSET_H[cards.home[card]] * MS_PER_H)
    return card, day, ts


def legit_merchants(rng, cards, pools, card, day):
    """Favourite merchants most of the time; otherwise a merchant of a
    category from the card's mix: physical ones where the cardholder is
    (home, or the trip country while travelling), online ones anywhere."""
    n = len(card)
    on_trip = ((cards.trip_country[card] >= 0) & (day >= cards.trip_start[card])
               & (day < cards.trip_end[card]))
    fav = (rng.random(n) < cards.p_fav[card]) & ~on_trip
    slot_w = 1.0 / np.arange(1, cards.favourites.shape[1] + 1) ** 1.1
    slot = np.searchsorted(np.cumsum(slot_w) / slot_w.sum(), rng.random(n),
                           side="right").clip(max=len(slot_w) - 1)
    merchant = cards.favourites[card, slot]
    other = np.flatnonzero(~fav)
    c_other = card[other]
    cat = sample_rows(rng, cards.cat_cum, c_other)
    online = rng.random(len(other)) < CAT_ONLINE[cat]
    where = np.where(on_trip[other], cards.trip_country[c_other],
                     cards.home[c_other])
    merchant[other] = pools.sample(rng, np.where(online, -1, where), cat, online)
    return merchant


def round_atm(cents, cat, hi=80000):
    """ATM withdrawals are multiples of 10, from 20 up to the daily limit."""
    atm = cat == CAT["atm"]
    cents[atm] = (np.round(cents[atm] / 1000) * 1000).clip(2000, hi)
    return cents


def legit_amounts(rng, cards, merchants, card, merchant):
    """Lognormal amounts around the card's level for the category; ATM
    withdrawals in multiples of 10, some round amounts elsewhere."""
    cat = merchants.category[merchant]
    cents = lognormal_cents(rng, cards.level[card, cat], CAT_SIGMA[cat],
                            lo=0.50, hi=9000.0)
    round_atm(cents, cat)
    round_ = (cat != CAT["atm"]) & (rng.random(len(cents)) < 0.06)
    cents[round_] = np.maximum(np.round(cents[round_] / 500), 1) * 500
    return cents


def legit_followups(rng, cards, merchants, txns):
    """Some online and gaming payments come in quick series (a basket split
    in several charges, in-game top-ups): 1-3 more payments at the same
    merchant seconds to minutes later.  Makes velocity alone ambiguous."""
    cat = merchants.category[txns.merchant]
    series = (np.isin(cat, [CAT["online"], CAT["gaming"]])
              & (rng.random(len(cat)) < 0.06))
    src = np.flatnonzero(series)
    extra = rng.integers(1, 4, len(src))
    ep, pos = episode_layout(extra)
    parent = src[ep]
    gaps = np.exp(np.log(60_000) + 1.0 * rng.standard_normal(len(ep)))
    gaps = gaps.clip(8_000, 900_000).astype(np.int64)
    ts = txns.ts[parent] + cumsum_within(ep, gaps)
    card = txns.card[parent]
    merchant = txns.merchant[parent]
    cents = lognormal_cents(rng, 0.6 * cards.level[card, cat[parent]],
                            CAT_SIGMA[cat[parent]], lo=0.99)
    return Txns(card, ts, merchant, cents, np.zeros(len(ep), np.int64))


def legit_big_tickets(rng, cards, pools, txns, share=0.004):
    """A few legitimate payments are unusual big purchases: a laptop, a
    flight, a sofa bought online, at a merchant new to the card and for
    several times its usual amount (what fraud looks like, but it is not)."""
    idx = np.flatnonzero(rng.random(len(txns.card)) < share)
    card = txns.card[idx]
    cat = np.where(rng.random(len(idx)) < 0.6, CAT["electronics"], CAT["travel"])
    online = rng.random(len(idx)) < CAT_ONLINE[cat]
    txns.merchant[idx] = pools.sample(
        rng, np.where(online, -1, cards.home[card]), cat, online)
    txns.cents[idx] = lognormal_cents(rng, cards.level[card, cat] * 3.0, 0.6,
                                      lo=20.0, hi=8000.0)


def legit_sprees(rng, cards, merchants, pools, txns, share=0.012):
    """Shopping trips: after some payments, 2-5 more within the hour at
    other merchants, often new ones (a mall, a city break, gift shopping)."""
    src = np.flatnonzero(rng.random(len(txns.card)) < share)
    extra = rng.integers(2, 6, len(src))
    ep, pos = episode_layout(extra)
    card = txns.card[src][ep]
    cats = np.array([CAT["grocery"], CAT["restaurant"], CAT["electronics"],
                     CAT["online"], CAT["fuel"], CAT["atm"]])
    cat = cats[rng.choice(len(cats), len(ep), p=[.25, .25, .15, .2, .05, .1])]
    online = rng.random(len(ep)) < CAT_ONLINE[cat]
    country = np.where(online, -1, merchants.country[txns.merchant[src]][ep])
    merchant = pools.sample(rng, country, cat, online, uniform=True)
    cents = round_atm(lognormal_cents(rng, cards.level[card, cat],
                                      CAT_SIGMA[cat], lo=0.5), cat)
    gaps = np.exp(np.log(9 * MS_PER_MIN) + 0.8 * rng.standard_normal(len(ep)))
    ts = txns.ts[src][ep] + cumsum_within(ep, gaps.clip(MS_PER_MIN, None)
                                          .astype(np.int64))
    return Txns(card, ts, merchant, cents, np.zeros(len(ep), np.int64))


def legit_transactions(rng, cfg, cards, merchants, pools):
    """All legitimate transactions of the period."""
    card, day, ts = legit_times(rng, cfg, cards)
    merchant = legit_merchants(rng, cards, pools, card, day)
    cents = legit_amounts(rng, cards, merchants, card, merchant)
    base = Txns(card, ts, merchant, cents, np.zeros(len(card), np.int64))
    legit_big_tickets(rng, cards, pools, base)
    return Txns.concat([base, legit_followups(rng, cards, merchants, base),
                        legit_sprees(rng, cards, merchants, pools, base)])


# --------------------------------------------------------------------------
# Fraud episodes
# --------------------------------------------------------------------------

def pick_victims(rng, cfg):
    """Distinct victim cards for each fraud type, episode counts drawn from
    the per-day rates.  Returns {type: card array}."""
    sizes = {t: rng.binomial(cfg.cards, min(1.0, 1 - np.exp(
        -r * cfg.fraud_scale * cfg.days))) for t, r in EPISODE_RATE_PER_DAY.items()}
    total = min(sum(sizes.values()), cfg.cards)
    victims = rng.choice(cfg.cards, total, replace=False)
    out, at = {}, 0
    for t, k in sizes.items():
        out[t] = np.sort(victims[at:at + k])
        at += k
    return out


def episode_starts(rng, cfg, n, home, local_hours=None):
    """Episode start times: a uniformly drawn day after the first one (so
    the victim has some history) and either any time or a local hour drawn
    from ``local_hours`` = (first, last) in the home country's time."""
    day = rng.integers(1, max(cfg.days, 2), n)
    if local_hours is None:
        in_day = rng.integers(0, MS_PER_DAY, n)
        return cfg.start_ms + day * MS_PER_DAY + in_day
    lo, hi = local_hours
    local = (lo * MS_PER_H + rng.integers(0, (hi - lo) * MS_PER_H, n)) % MS_PER_DAY
    return (cfg.start_ms + day * MS_PER_DAY + local
            - CTRY_OFFSET_H[home] * MS_PER_H)


def card_testing(rng, cfg, cards, pools, victims):
    """Card testing: a burst of tiny online authorizations (0.10-4.99,
    often round) at 1-4 obscure online or gaming merchants, seconds apart,
    then one or two large online purchases minutes later."""
    e = len(victims)
    n_small = (1 + rng.poisson(6, e)).clip(max=30)
    n_big = 1 + (rng.random(e) < 0.4)
    counts = n_small + n_big
    ep, pos = episode_layout(counts)
    big = pos >= n_small[ep]
    # merchants: each episode tests on a few random online merchants
    m_cat = np.where(rng.random((e, 4)) < 0.6, CAT["online"], CAT["gaming"])
    m_set = pools.sample(rng, -1, m_cat, True, uniform=True).reshape(e, 4)
    n_set = rng.integers(1, 5, e)
    slot = (rng.random(len(ep)) * n_set[ep]).astype(np.int64)
    merchant = m_set[ep, slot]
    big_cat = np.where(rng.random(big.sum()) < 0.6, CAT["electronics"],
                       CAT["online"])
    merchant[big] = pools.sample(rng, -1, big_cat, True)
    # amounts
    cents = np.where(rng.random(len(ep)) < 0.4,
                     rng.choice([100, 50, 200, 99, 10, 500], len(ep)),
                     rng.integers(10, 500, len(ep)))
    cents[big] = lognormal_cents(rng, np.full(big.sum(), 420.0), 0.6,
                                 lo=80.0, hi=3000.0)
    # timing: small tests 3 s - 3 min apart, the cash-out 1-40 min later
    gaps = np.exp(np.log(20_000) + 0.9 * rng.standard_normal(len(ep)))
    gaps = gaps.clip(3_000, 180_000)
    gaps[big] = np.exp(np.log(6 * MS_PER_MIN) + 0.8 * rng.standard_normal(
        big.sum())).clip(MS_PER_MIN, 40 * MS_PER_MIN)
    gaps[pos == 0] = 0
    start = episode_starts(rng, cfg, e, cards.home[victims])
    ts = start[ep] + cumsum_within(ep, gaps.astype(np.int64))
    return Txns(victims[ep], ts, merchant, cents.astype(np.int64),
                np.full(len(ep), FRAUD_TYPES.index("card_testing")))


def account_takeover(rng, cfg, cards, pools, victims):
    """Account takeover: starting at night (home time), online purchases of
    electronics, travel and goods from a merchant country new to the card,
    amounts several times the card's usual and growing, and the time between
    payments shrinking (rising velocity)."""
    e = len(victims)
    counts = (3 + rng.poisson(4, e)).clip(max=15)
    ep, pos = episode_layout(counts)
    card = victims[ep]
    # a cash-out country, or (for a third) ordinary online shops anywhere
    country = np.where(rng.random(e) < 0.67, rng.choice(RISK_IDX, e), -1)[ep]
    cat = np.array([CAT["electronics"], CAT["travel"], CAT["online"]])[
        rng.choice(3, len(ep), p=[0.45, 0.2, 0.35])]
    merchant = pools.sample(rng, country, cat, True)
    usual = cards.level[card, cat]
    cents = lognormal_cents(rng, usual * 2.2 * (1 + 0.15 * pos), 0.7,
                            lo=15.0, hi=6000.0)
    first_gap = np.exp(np.log(35 * MS_PER_MIN) + 0.6 * rng.standard_normal(e))
    gaps = first_gap[ep] * 0.6 ** pos * np.exp(0.3 * rng.standard_normal(len(ep)))
    gaps = gaps.clip(20_000, None)
    gaps[pos == 0] = 0
    # most start at night while the owner sleeps, the rest in the evening
    night = episode_starts(rng, cfg, e, cards.home[victims], local_hours=(23, 29))
    evening = episode_starts(rng, cfg, e, cards.home[victims], local_hours=(17, 23))
    start = np.where(rng.random(e) < 0.65, night, evening)
    ts = start[ep] + cumsum_within(ep, gaps.astype(np.int64))
    return Txns(card, ts, merchant, cents,
                np.full(len(ep), FRAUD_TYPES.index("account_takeover")))


def lost_stolen(rng, cfg, cards, pools, victims):
    """Lost or stolen card: in the daytime, several POS and ATM payments in
    a short time at merchants the card never used, mostly in its home
    country, sometimes just across a border; ATM withdrawals near the
    limit, goods easy to resell."""
    e = len(victims)
    counts = (2 + rng.poisson(3, e)).clip(max=10)
    ep, pos = episode_layout(counts)
    card = victims[ep]
    abroad = rng.random(e) < 0.3
    country = np.where(abroad, rng.choice(TRIP_IDX, e), cards.home[victims])
    cats = np.array([CAT["atm"], CAT["electronics"], CAT["grocery"],
                     CAT["fuel"], CAT["restaurant"]])
    cat = cats[rng.choice(5, len(ep), p=[0.35, 0.25, 0.18, 0.12, 0.10])]
    merchant = pools.sample(rng, country[ep], cat, False, uniform=True)
    cents = lognormal_cents(rng, cards.level[card, cat] * 1.6, 0.6,
                            lo=5.0, hi=2500.0)
    atm = cat == CAT["atm"]
    cents[atm] = rng.choice([20000, 25000, 30000, 40000, 50000], atm.sum())
    gaps = np.exp(np.log(12 * MS_PER_MIN) + 0.8 * rng.standard_normal(len(ep)))
    gaps = gaps.clip(MS_PER_MIN, 90 * MS_PER_MIN)
    gaps[pos == 0] = 0
    start = episode_starts(rng, cfg, e, cards.home[victims], local_hours=(9, 22))
    ts = start[ep] + cumsum_within(ep, gaps.astype(np.int64))
    return Txns(card, ts, merchant, cents,
                np.full(len(ep), FRAUD_TYPES.index("lost_stolen")))


def fraud_transactions(rng, cfg, cards, pools):
    """All fraud episodes; returns (txns, legit_until) where legit_until
    [card] is when its owner's payments stop (int64 max: never): when the
    card is lost or stolen, or when the issuer blocks it after fraud."""
    victims = pick_victims(rng, cfg)
    makers = {"card_testing": card_testing,
              "account_takeover": account_takeover,
              "lost_stolen": lost_stolen}
    parts = [makers[t](rng, cfg, cards, pools, v) for t, v in victims.items()]
    txns = Txns.concat(parts)
    # most compromised cards are blocked 1-48 h after the episode's end
    never = np.iinfo(np.int64).max
    block_at = np.full(cfg.cards, never, np.int64)
    end = np.full(cfg.cards, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(end, txns.card, txns.ts)
    hit = np.flatnonzero(end > np.iinfo(np.int64).min)
    blocked = rng.random(len(hit)) < 0.85
    delay = rng.integers(MS_PER_H, 48 * MS_PER_H, len(hit))
    block_at[hit[blocked]] = end[hit[blocked]] + delay[blocked]
    # a lost or stolen card is not in its owner's hands any more
    stolen = txns.fraud == FRAUD_TYPES.index("lost_stolen")
    np.minimum.at(block_at, txns.card[stolen], txns.ts[stolen])
    return txns, block_at


# --------------------------------------------------------------------------
# Assembly: blocking, period, arrival order
# --------------------------------------------------------------------------

def arrival_order(rng, cfg, txns):
    """Arrival time = event time, except for a small share of late events
    (lognormal delay, median 45 s, 2 s to 20 min).  Returns the row order
    (stable, ties broken by a random key) and the number of delayed rows."""
    n = len(txns.ts)
    late = rng.random(n) < cfg.late_share
    delay = np.exp(np.log(45_000) + 1.1 * rng.standard_normal(n))
    delay = np.where(late, delay.clip(2_000, 20 * MS_PER_MIN), 0).astype(np.int64)
    tie = rng.permutation(n)
    return np.lexsort((tie, txns.ts + delay)), int(late.sum())


def generate(cfg):
    """Simulate the world and return (txns in arrival order, merchants)."""
    streams = np.random.SeedSequence(cfg.seed).spawn(5)
    r_world, r_cards, r_legit, r_fraud, r_late = (
        np.random.default_rng(s) for s in streams)
    merchants = build_merchants(r_world, cfg)
    pools = MerchantPools(merchants)
    cards = build_cards(r_cards, cfg, pools)
    legit = legit_transactions(r_legit, cfg, cards, merchants, pools)
    fraud, legit_until = fraud_transactions(r_fraud, cfg, cards, pools)
    legit = legit.take(np.flatnonzero(legit.ts < legit_until[legit.card]))
    txns = Txns.concat([legit, fraud])
    txns = txns.take(np.flatnonzero((txns.ts >= cfg.start_ms)
                                    & (txns.ts < cfg.end_ms)))
    order, _ = arrival_order(r_late, cfg, txns)
    return txns.take(order), merchants


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

COLUMNS = ["txn_id", "card_id", "ts", "amount", "merchant", "mcc", "country",
           "channel", "is_fraud"]


def id_strings(prefix, values, width):
    """Zero-padded ids such as c000123."""
    return [f"{prefix}{v:0{width}d}" for v in values.tolist()]


def format_columns(txns, merchants, first_id, with_type):
    """The output columns as lists of strings (no quoting is ever needed:
    no value contains a comma, a quote or a newline)."""
    n = len(txns.ts)
    m = txns.merchant
    n_merch = len(merchants.category)
    ts = np.datetime_as_string(txns.ts.astype("datetime64[ms]"), unit="ms")
    cents = txns.cents.tolist()
    cols = {
        "txn_id": id_strings("t", np.arange(first_id, first_id + n), 9),
        "card_id": id_strings("c", txns.card, 6),
        "ts": [s + "Z" for s in ts.tolist()],
        "amount": [f"{c // 100}.{c % 100:02d}" for c in cents],
        "merchant": id_strings("m", m, max(5, len(str(n_merch - 1)))),
        "mcc": np.array(CAT_NAMES)[merchants.category[m]].tolist(),
        "country": np.array(CTRY_CODES)[merchants.country[m]].tolist(),
        "channel": np.array(CHANNELS)[merchants.channel[m]].tolist(),
        "is_fraud": np.where(txns.fraud > 0, "1", "0").tolist(),
    }
    if with_type:
        cols["fraud_type"] = np.array(FRAUD_TYPES)[txns.fraud].tolist()
    return cols


def render(cols, fmt):
    """The file's text, CSV with a header or JSON Lines."""
    names = list(cols)
    if fmt == "csv":
        lines = map(",".join, zip(*cols.values()))
        return ",".join(names) + "\n" + "".join(line + "\n" for line in lines)
    numeric = {"amount", "is_fraud"}
    parts = []
    for i, name in enumerate(names):
        sep = "{" if i == 0 else ","
        parts.append(f'{sep}"{name}":' + ("%s" if name in numeric else '"%s"'))
    template = "".join(parts) + "}\n"
    return "".join(template % row for row in zip(*cols.values()))


def write_text(path, text):
    """Write to a file (through a temporary name) or to stdout for '-'."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def split_paths(prefix, fmt):
    """history/live file names for --split: PREFIX.history.EXT, ..."""
    for ext in (".csv", ".jsonl"):
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    return f"{prefix}.history.{fmt}", f"{prefix}.live.{fmt}"


def split_point(txns, cfg, fraction):
    """Rows are in arrival order; history is every row before the first one
    whose ts reaches the cut time start + fraction * period, live is the
    rest.  Late rows stay where they arrived, so history followed by live
    (without its header) is exactly the single file."""
    cut = cfg.start_ms + int(round(fraction * cfg.days * MS_PER_DAY))
    running = np.maximum.accumulate(txns.ts)
    return int(np.searchsorted(running, cut, side="left")), cut


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------

def fmt_ms(ms):
    return str(np.datetime64(int(ms), "ms")) + "Z"


def stats_text(txns, merchants, cfg, elapsed, files):
    """A human-readable summary of what was generated."""
    n = len(txns.ts)
    out = []
    add = out.append
    add(f"rows               {n:,}")
    add(f"cards              {len(np.unique(txns.card)):,} used "
        f"(of {cfg.cards:,})")
    add(f"merchants          {len(np.unique(txns.merchant)):,} used "
        f"(of {len(merchants.category):,})")
    if n:
        add(f"time range         {fmt_ms(txns.ts.min())} .. {fmt_ms(txns.ts.max())}")
        late = txns.ts[1:] < txns.ts[:-1]
        behind = np.maximum.accumulate(txns.ts) - txns.ts
        add(f"late arrivals      {int(late.sum()):,} rows with ts older than the "
            f"previous row ({late.sum() / n * 100:.2f}%); up to "
            f"{behind.max() / 1000:.1f} s behind the newest ts seen")
    fraud = txns.fraud > 0
    add(f"fraud              {int(fraud.sum()):,} rows "
        f"({fraud.mean() * 100 if n else 0:.2f}%), "
        f"{len(np.unique(txns.card[fraud])):,} cards "
        f"({len(np.unique(txns.card[fraud])) / max(cfg.cards, 1) * 100:.1f}%)")
    for code, name in enumerate(FRAUD_TYPES[1:], 1):
        sel = txns.fraud == code
        cards_hit = len(np.unique(txns.card[sel]))
        amt = txns.cents[sel].sum() / 100
        add(f"  {name:<17}{int(sel.sum()):>8,} rows {sel.mean() * 100 if n else 0:6.3f}%"
            f"  {cards_hit:>6,} cards  {amt:>14,.2f} amount")
    if n:
        add("by mcc             " + "  ".join(
            f"{name} {np.mean(merchants.category[txns.merchant] == k) * 100:.1f}%"
            for k, name in enumerate(CAT_NAMES)))
        add("by channel         " + "  ".join(
            f"{name} {np.mean(merchants.channel[txns.merchant] == k) * 100:.1f}%"
            for k, name in enumerate(CHANNELS)))
    for f in files:
        add(f"wrote              {f}")
    add(f"generated in       {elapsed:.2f} s")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Generate synthetic card transactions with labelled "
                    "fraud episodes (CSV or JSON Lines, arrival order).")
    p.add_argument("--cards", type=int, default=5000,
                   help="number of cards (default 5000)")
    p.add_argument("--days", type=int, default=30,
                   help="length of the period in days (default 30)")
    p.add_argument("--start", default="2026-03-01",
                   help="first day, YYYY-MM-DD, UTC (default 2026-03-01)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--format", choices=["csv", "jsonl"], default=None,
                   help="output format (default: from --out's extension, else csv)")
    p.add_argument("--out", default="-",
                   help="output file, '-' for stdout (default); with --split, "
                        "the prefix of PREFIX.history.EXT and PREFIX.live.EXT")
    p.add_argument("--split", type=float, default=None, metavar="FRACTION",
                   help="write two files split by time: the first FRACTION of "
                        "the period (history) and the rest (live)")
    p.add_argument("--fraud-scale", type=float, default=1.0,
                   help="multiply every fraud episode rate (default 1)")
    p.add_argument("--late", type=float, default=0.004,
                   help="share of rows that arrive late (default 0.004)")
    p.add_argument("--with-fraud-type", action="store_true",
                   help="add a fraud_type column (none, card_testing, "
                        "account_takeover, lost_stolen)")
    p.add_argument("--stats", action="store_true",
                   help="print summary statistics to stderr")
    a = p.parse_args(argv)
    try:
        day = dt.datetime.strptime(a.start, "%Y-%m-%d").replace(
            tzinfo=dt.timezone.utc)
    except ValueError:
        p.error(f"--start {a.start!r}: expected YYYY-MM-DD")
    if a.cards < 1 or a.days < 1:
        p.error("--cards and --days must be at least 1")
    if a.split is not None and not 0 < a.split < 1:
        p.error("--split must be between 0 and 1 (exclusive)")
    if a.split is not None and a.out == "-":
        p.error("--split needs --out PREFIX")
    if not 0 <= a.late <= 1 or a.fraud_scale < 0:
        p.error("--late must be in [0, 1] and --fraud-scale >= 0")
    if a.format is None:
        a.format = "jsonl" if a.out.endswith((".jsonl", ".ndjson")) else "csv"
    cfg = Config(cards=a.cards, days=a.days,
                 start_ms=int(day.timestamp()) * MS_PER_S,
                 start_weekday=day.weekday(), seed=a.seed,
                 fraud_scale=a.fraud_scale, late_share=a.late)
    return a, cfg


def main(argv=None):
    args, cfg = parse_args(argv)
    t0 = time.perf_counter()
    txns, merchants = generate(cfg)
    if args.split is None:
        pieces = [(args.out, txns, 0)]
    else:
        at, _ = split_point(txns, cfg, args.split)
        hist, live = split_paths(args.out, args.format)
        pieces = [(hist, txns.take(np.arange(at)), 0),
                  (live, txns.take(np.arange(at, len(txns.ts))), at)]
    for path, part, first in pieces:
        cols = format_columns(part, merchants, first, args.with_fraud_type)
        write_text(path, render(cols, args.format))
    if args.stats:
        files = [p for p, _, _ in pieces if p != "-"]
        sys.stderr.write(stats_text(txns, merchants, cfg,
                                    time.perf_counter() - t0, files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
