'use strict';
// Log of every event any client sent, in arrival order, for
// GET /control/received. Bounded: past `limit` entries the oldest are dropped
// (and counted), so a long benchmark cannot exhaust memory.

class Recorder {
  constructor(limit) {
    this.limit = limit > 0 ? limit : Infinity;
    this.clear();
  }

  clear() {
    this.entries = [];
    this.seq = 0;
    this.dropped = 0;
  }

  record(client, user, channel, event, data) {
    const entry = {
      seq: ++this.seq,
      t: Date.now(),
      client,
      user: user === undefined ? null : user,
      channel: channel === undefined ? null : channel,
      event,
      data: data === undefined ? null : data,
    };
    this.entries.push(entry);
    if (this.entries.length > this.limit) {
      this.entries.shift();
      this.dropped++;
    }
    return entry;
  }

  // A session that logs in before joinChannel sends events with no channel
  // yet; once it names a channel, those earlier entries are filed under it so
  // `received?channel=X` shows the whole conversation of that connection.
  tagClient(client, channel) {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i];
      if (e.client === client && e.channel === null) e.channel = channel;
    }
  }

  query({ channel, since, event, client } = {}) {
    return this.entries.filter((e) =>
      (since === undefined || e.seq > since) &&
      (channel === undefined || e.channel === channel) &&
      (event === undefined || e.event === event) &&
      (client === undefined || e.client === client));
  }
}

module.exports = { Recorder };
