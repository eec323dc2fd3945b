// Click (or Enter on) a column's header to sort the table by it; again to reverse. A cell sorts by its
// data-sort value when it has one, else by its text; numbers as numbers.
function compareCells(a, b) {
  const x = parseFloat(a), y = parseFloat(b);
  return isNaN(x) || isNaN(y) ? a.localeCompare(b, undefined, {numeric: true}) : x - y;
}
for (const table of document.querySelectorAll("table.sortable")) {
  const headers = [...table.tHead.rows[0].cells];
  headers.forEach((header, column) => {
    const sort = () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach(h => h.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const key = row => row.cells[column].dataset.sort ?? row.cells[column].textContent.trim();
      const body = table.tBodies[0];
      body.append(...[...body.rows].sort((a, b) => (ascending ? 1 : -1) * compareCells(key(a), key(b))));
    };
    header.tabIndex = 0;
    header.title = "Sort by " + header.textContent;
    header.addEventListener("click", sort);
    header.addEventListener("keydown", event => { if (event.key === "Enter") sort(); });
  });
}
