// redlat report: reveal blurred text on click, filter and sort tables. Reads text only; never writes markup.
(function () {
  "use strict";

  function reveal(event) {
    var target = event.target.closest ? event.target.closest(".blur") : null;
    if (target) { target.classList.add("shown"); }
  }
  document.addEventListener("click", reveal);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") { reveal(event); }
  });

  var revealAll = document.getElementById("reveal-all");
  if (revealAll) {
    revealAll.addEventListener("change", function () {
      document.body.classList.toggle("reveal-all", revealAll.checked);
    });
  }

  function rowsOf(table) { return Array.prototype.slice.call(table.tBodies[0].rows); }

  function cellKey(row, column) {
    var cell = row.cells[column];
    if (!cell) { return ""; }
    var raw = cell.getAttribute("data-sort");
    if (raw !== null && raw !== "" && !isNaN(Number(raw))) { return Number(raw); }
    return (raw !== null ? raw : cell.textContent).toLowerCase();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, column) {
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = rowsOf(table);
        rows.sort(function (a, b) {
          var x = cellKey(a, column), y = cellKey(b, column);
          if (x < y) { return ascending ? -1 : 1; }
          if (x > y) { return ascending ? 1 : -1; }
          return 0;
        });
        var body = table.tBodies[0];
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  Array.prototype.forEach.call(document.querySelectorAll("input[data-filter]"), function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    var counter = document.getElementById(input.getAttribute("data-filter") + "-count");
    input.addEventListener("input", function () {
      var query = input.value.trim().toLowerCase();
      var shown = 0;
      rowsOf(table).forEach(function (row) {
        var match = query === "" || row.textContent.toLowerCase().indexOf(query) !== -1;
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      if (counter) { counter.textContent = String(shown); }
    });
  });
})();
