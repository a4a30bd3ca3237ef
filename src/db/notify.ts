// The channel stored insights are announced on (NOTIFY by the store statement, LISTEN by
// every instance's insight bus), defined once for both sides.
export const INSIGHTS_CHANNEL = 'gleaner_insights'
/** NOTIFY payloads are capped at 8000 bytes: 36-character ids and a comma each, 200 a payload. */
export const IDS_PER_NOTIFY = 200
