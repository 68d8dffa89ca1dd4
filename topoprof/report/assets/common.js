/* topoprof reports: shared helpers (formatting, safe element builders, copy buttons, sortable
   and filterable tables). Strings from the run only ever reach the page through textContent
   or setAttribute. Exposed as window.topoprof for report.js and compare.js. */
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';

  // ---------------------------------------------------------------- formatting
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function p3(v) { return Number(v.toPrecision(3)).toString(); }
  function fmtUs(v) {
    if (!isNum(v)) return '–';
    var a = Math.abs(v);
    if (a >= 1e6) return p3(v / 1e6) + ' s';
    if (a >= 1e3) return p3(v / 1e3) + ' ms';
    return p3(v) + ' µs';
  }
  var SI = [[1e18, 'E'], [1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  function fmtSi(v, unit) {
    if (!isNum(v)) return '–';
    unit = unit || '';
    for (var i = 0; i < SI.length; i++) {
      if (Math.abs(v) >= SI[i][0]) return p3(v / SI[i][0]) + ' ' + SI[i][1] + unit;
    }
    return (v === Math.round(v) ? String(v) : p3(v)) + (unit ? ' ' + unit : '');
  }
  function fmtPct(v) { return isNum(v) ? (v * 100).toFixed(1) + ' %' : '–'; }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function sel(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function shortName(name) {
    if (name === '') return '(root)';
    var i = name.lastIndexOf('.');
    return i < 0 ? name : name.slice(i + 1);
  }
  function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + '…' : text; }

  // ---------------------------------------------------------------- copy buttons
  function copyText(btn, text) {
    function done() {
      btn.textContent = 'Copied';
      btn.classList.add('done');
      setTimeout(function () { btn.textContent = 'Copy'; btn.classList.remove('done'); }, 1500);
    }
    function fallback() {
      var ta = el('textarea');
      ta.value = text;
      ta.style.position = 'fixed';
      ta.style.opacity = '0';
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      ta.remove();
      if (ok) done(); else btn.textContent = 'Select the text to copy';
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }
  // ---------------------------------------------------------------- tables
  /* A sortable, filterable table over rows of data.
     opts: table (element), rows (data objects), cols ({key, str, get, fmt, render, cls}),
     filter (input element), extraFilter (function row -> bool), count (element),
     rowInit (function (tr, row)), textOf (function row -> searchable text), limit (rows drawn
     until "show all" is pressed: a table of thousands of rows takes the browser a long layout).
     Clicking a header sorts by that column (numbers largest first, then toggles); missing
     values always sort last; ties keep the original order. */
  function makeTable(opts) {
    var table = opts.table, tbody = table.tBodies[0];
    var cols = opts.cols;
    cols.forEach(function (c) { if (!c.get) c.get = function (r) { return r[c.key]; }; });
    var items = opts.rows.map(function (r, i) {
      var tr = el('tr');
      cols.forEach(function (c) {
        var v = c.get(r), td;
        if (c.render) td = c.render(r, v);
        else if (c.str) td = el('td', c.cls ? { 'class': c.cls } : null, v === null || v === undefined ? '' : String(v));
        else td = el('td', { 'class': 'num' + (c.cls ? ' ' + c.cls : '') }, (c.fmt || String)(v));
        tr.appendChild(td);
      });
      if (opts.rowInit) opts.rowInit(tr, r);
      return { data: r, tr: tr, index: i, text: (opts.textOf ? opts.textOf(r) : '').toLowerCase() };
    });
    var state = { key: null, desc: false, all: false };
    function missing(v) { return v === null || v === undefined || v === '' || (typeof v === 'number' && !isFinite(v)); }
    function refresh() {
      var q = opts.filter ? opts.filter.value.trim().toLowerCase() : '';
      var list = items.filter(function (it) {
        if (opts.extraFilter && !opts.extraFilter(it.data)) return false;
        return !q || it.text.indexOf(q) >= 0;
      });
      if (state.key) {
        var col = cols.filter(function (c) { return c.key === state.key; })[0];
        var sign = state.desc ? -1 : 1;
        list.sort(function (a, b) {
          var va = col.get(a.data), vb = col.get(b.data), na = missing(va), nb = missing(vb);
          if (na || nb) return na === nb ? a.index - b.index : (na ? 1 : -1);
          var d = col.str ? String(va).localeCompare(String(vb)) : va - vb;
          return d !== 0 ? sign * d : a.index - b.index;
        });
      }
      var shown = (opts.limit && !state.all) ? list.slice(0, opts.limit) : list;
      var frag = document.createDocumentFragment();
      shown.forEach(function (it) { frag.appendChild(it.tr); });
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      tbody.appendChild(frag);
      if (opts.count) {
        opts.count.textContent = (shown.length < list.length ? shown.length + ' shown of ' : '') + list.length +
          (list.length < items.length ? ' matching, of ' + items.length : '') + ' rows';
      }
      if (more) more.hidden = shown.length >= list.length;
    }
    var more = null;
    if (opts.limit) {
      more = el('button', { type: 'button', 'class': 'more' }, 'Show all rows');
      more.hidden = true;
      more.addEventListener('click', function () { state.all = true; refresh(); });
      var anchor = table.parentNode.classList.contains('tablebox') ? table.parentNode : table;
      anchor.parentNode.insertBefore(more, anchor.nextSibling);
    }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th) {
      var key = th.getAttribute('data-key');
      if (!key) return;
      th.setAttribute('tabindex', '0');
      function sortBy() {
        var col = cols.filter(function (c) { return c.key === key; })[0];
        if (!col) return;
        if (state.key === key) state.desc = !state.desc;
        else { state.key = key; state.desc = !col.str; }
        Array.prototype.forEach.call(heads, function (o) { o.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', state.desc ? 'descending' : 'ascending');
        refresh();
      }
      th.addEventListener('click', sortBy);
      th.addEventListener('keydown', function (ev) { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sortBy(); } });
    });
    var timer = null;
    if (opts.filter) opts.filter.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 80);
    });
    refresh();
    function reveal(tr) {
      if (!tr.parentNode) { state.all = true; refresh(); }
    }
    return { refresh: refresh, reveal: reveal, items: items };
  }

  Array.prototype.forEach.call(document.querySelectorAll('.code .copy'), function (btn) {
    btn.addEventListener('click', function () {
      copyText(btn, btn.parentNode.querySelector('code').textContent);
    });
  });

  window.topoprof = {
    NS: NS, isNum: isNum, p3: p3, fmtUs: fmtUs, fmtSi: fmtSi, fmtPct: fmtPct, el: el, sel: sel,
    shortName: shortName, clip: clip, makeTable: makeTable,
    data: function () { return JSON.parse(document.getElementById('report-data').textContent); }
  };
})();
