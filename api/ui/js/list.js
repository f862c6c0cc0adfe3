// A cursor-paged list from the API that stays current while shown: the first page, "load more"
// pages appended, and a refresh that re-reads everything loaded so far (up to 200) in one request.

import { api } from "./api.js";

const REFRESH_MAX = 200; // the API's largest page

/**
 * render(items, loadMore) draws the list; loadMore is null on the last page. interval is the refresh
 * period in ms, or a function of the items giving it. Rejects if the first page cannot be read.
 * Returns {items(), replace(item)}: replace swaps an item (matched by id) and redraws.
 */
export async function livePages(view, { path, query, pageSize = 50, interval, render }) {
  let items = [];
  let cursor = null;
  const read = (limit, after) => api(path, { query: { ...query, limit, cursor: after }, signal: view.signal });
  const draw = () => render(items, cursor ? loadMore : null);
  async function loadMore() {
    const page = await read(pageSize, cursor);
    items = items.concat(page.items);
    cursor = page.next_cursor;
    draw();
    return page.items.length;
  }
  const period = () => (typeof interval === "function" ? interval(items) : interval);

  const first = await read(pageSize);
  items = first.items;
  cursor = first.next_cursor;
  draw();
  view.live(async () => {
    const page = await read(Math.min(REFRESH_MAX, Math.max(pageSize, items.length)));
    const before = JSON.stringify(items);
    items = page.items;
    cursor = page.next_cursor;
    if (JSON.stringify(items) !== before) draw();
    return period();
  }, period());
  return {
    items: () => items,
    replace(updated) {
      items = items.map((item) => (item.id === updated.id ? updated : item));
      draw();
    },
  };
}
