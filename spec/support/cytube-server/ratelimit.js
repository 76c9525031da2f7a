'use strict';
// The two limiters CyTube uses.

// Chat/PM flood limiter (src/utilities.js newRateLimiter): up to `burst`
// messages back to back, then one per 1000/sustained ms measured from the last
// *accepted* message; after `cooldown` seconds without an accepted message the
// count starts again. throttle() returns true when the message must be dropped.
class ChatLimiter {
  constructor(now = Date.now) {
    this.now = now;
    this.count = 0;
    this.lastTime = 0;
  }

  throttle(params = {}) {
    let burst = +params.burst;
    let sustained = +params.sustained;
    let cooldown = +params.cooldown;
    if (Number.isNaN(burst)) burst = 10;
    if (Number.isNaN(sustained)) sustained = 2;
    if (Number.isNaN(cooldown)) cooldown = burst / sustained;
    const now = this.now();
    if (this.lastTime < now - cooldown * 1000) {
      this.count = 1;
      this.lastTime = now;
      return false;
    }
    if (this.count < burst) {
      this.count++;
      this.lastTime = now;
      return false;
    }
    if (now - this.lastTime < 1000 / sustained) return true;
    this.lastTime = now;
    return false;
  }
}

// Token bucket (src/util/token-bucket.js): `capacity` tokens, refilled at
// `rate` tokens per second. Used for connection attempts per IP and incoming
// events per socket. throttle() returns true when over the limit.
class TokenBucket {
  constructor(capacity, rate, now = Date.now) {
    this.capacity = capacity;
    this.rate = rate;
    this.now = now;
    this.tokens = capacity;
    this.lastRefill = now();
  }

  throttle() {
    const now = this.now();
    const refill = ((now - this.lastRefill) / 1000) * this.rate;
    this.tokens = Math.min(this.capacity, this.tokens + refill);
    this.lastRefill = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return false;
    }
    return true;
  }
}

module.exports = { ChatLimiter, TokenBucket };
