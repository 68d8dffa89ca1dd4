/* topoprof comparison: the layer delta table (sort, filter by text and by where a layer is).
   Uses window.topoprof (common.js). */
(function () {
  'use strict';
  var T = window.topoprof;
  var D = T.data();
  var fmtUs = T.fmtUs, el = T.el;
  function si(v) { return T.fmtSi(v, ''); }
  function signedUs(v) { return T.isNum(v) ? (v > 0 ? '+' : v < 0 ? '−' : '±') + fmtUs(Math.abs(v)) : '–'; }
  function ratio(v) {
    if (!T.isNum(v)) return '–';
    return (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(3)) + '×';
  }
  var WHERE = { both: 'A, B', only_a: 'A only', only_b: 'B only' };
  var statusSel = document.getElementById('layer-status');
  var leavesBox = document.getElementById('layer-leaves');
  var tableEl = document.getElementById('layer-table');
  if (!tableEl) return;
  var t = T.makeTable({
    table: tableEl,
    rows: D.layers || [],
    limit: 300,
    filter: document.getElementById('layer-filter'),
    count: document.getElementById('layer-count'),
    extraFilter: function (r) {
      if (statusSel && statusSel.value && r.status !== statusSel.value) return false;
      return !(leavesBox && leavesBox.checked) || r.leaf;
    },
    textOf: function (r) { return r.name + ' ' + r.kind + ' ' + (r.kind_b || ''); },
    rowInit: function (tr, r) {
      tr.setAttribute('data-name', r.name);
      if (!r.leaf) tr.classList.add('container');
    },
    cols: [
      { key: 'name', str: true, get: function (r) { return r.name === '' ? '(root)' : r.name; }, render: function (r) {
        return el('td', { 'class': 'name', title: r.name }, r.name === '' ? '(root)' : r.name);
      } },
      { key: 'kind', str: true, get: function (r) { return r.kind_b ? r.kind + ' → ' + r.kind_b : r.kind; } },
      { key: 'status', str: true, get: function (r) { return WHERE[r.status] || r.status; } },
      { key: 'self_a', get: function (r) { return r.self_us.a; }, fmt: fmtUs },
      { key: 'self_b', get: function (r) { return r.self_us.b; }, fmt: fmtUs },
      { key: 'self_diff', get: function (r) { return r.self_us.diff; }, render: function (r, v) {
        var cls = 'num' + (T.isNum(v) && v < 0 ? ' faster' : T.isNum(v) && v > 0 ? ' slower' : '');
        return el('td', { 'class': cls }, signedUs(v));
      } },
      { key: 'self_ratio', get: function (r) { return r.self_us.ratio; }, fmt: ratio },
      { key: 'fwd_a', get: function (r) { return r.fwd_us.a; }, fmt: fmtUs },
      { key: 'fwd_b', get: function (r) { return r.fwd_us.b; }, fmt: fmtUs },
      { key: 'bwd_a', get: function (r) { return r.bwd_us.a; }, fmt: fmtUs },
      { key: 'bwd_b', get: function (r) { return r.bwd_us.b; }, fmt: fmtUs },
      { key: 'flops_b', get: function (r) { return r.flops.b !== null ? r.flops.b : r.flops.a; }, fmt: si },
      { key: 'fps_a', get: function (r) { return r.achieved_flop_per_s.a; }, fmt: si },
      { key: 'fps_b', get: function (r) { return r.achieved_flop_per_s.b; }, fmt: si }
    ]
  });
  if (statusSel) statusSel.addEventListener('change', t.refresh);
  if (leavesBox) leavesBox.addEventListener('change', t.refresh);
})();
