"""Static files: the demo page served at `/`, and what `/static/` serves
(relay/frontdoors/static.py): the browser client `relay-client.js` and its `.d.ts`."""
