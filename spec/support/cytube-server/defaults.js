'use strict';
// Channel state a freshly created test channel starts with: the values a
// registered CyTube 3.86 channel sends on join (copied from the captures in
// shared/fixtures/cytube-3.86, which all use a registered channel).

// `setPermissions`: permission node -> minimum rank.
const PERMISSIONS = {
  seeplaylist: -1, playlistadd: 1.5, playlistnext: 1.5, playlistmove: 1.5,
  playlistdelete: 2, playlistjump: 1.5, playlistaddlist: 1.5, oplaylistadd: -1,
  oplaylistnext: 1.5, oplaylistmove: 1.5, oplaylistdelete: 2, oplaylistjump: 1.5,
  oplaylistaddlist: 1.5, playlistaddcustom: 3, playlistaddrawfile: 2,
  playlistaddlive: 1.5, exceedmaxlength: 2, addnontemp: 2, settemp: 2,
  playlistshuffle: 2, playlistclear: 2, pollctl: 1.5, pollvote: -1,
  viewhiddenpoll: 1.5, voteskip: -1, viewvoteskip: 1.5, mute: 1.5, kick: 1.5,
  ban: 2, motdedit: 3, filteredit: 3, filterimport: 3, emoteedit: 3,
  emoteimport: 3, playlistlock: 2, leaderctl: 2, drink: 1.5, chat: 0,
  chatclear: 2, exceedmaxitems: 2, deletefromchannellib: 2,
  exceedmaxdurationperuser: 2,
};

// `channelOpts`, in the key order the real server sends them.
function channelOpts(channelName) {
  return {
    allow_voteskip: true,
    voteskip_ratio: 0.5,
    afk_timeout: 600,
    pagetitle: channelName,
    maxlength: 0,
    externalcss: '',
    externaljs: '',
    chat_antiflood: false,
    chat_antiflood_params: { burst: 4, sustained: 1, cooldown: 4 },
    show_public: false,
    enable_link_regex: true,
    password: false,
    allow_dupes: false,
    torbanned: false,
    block_anonymous_users: false,
    allow_ascii_control: false,
    playlist_max_per_user: 0,
    new_user_chat_delay: 0,
    new_user_chat_link_delay: 0,
    playlist_max_duration_per_user: 0,
  };
}

// Chat limiter used for everyone with rank >= 2, for PMs, and for everyone
// when chat_antiflood is off (src/channel/chat.js MIN_ANTIFLOOD).
const FIXED_ANTIFLOOD = { burst: 20, sustained: 10 };

// Chat buffer replayed on join.
const CHAT_BUFFER_SIZE = 15;

module.exports = { PERMISSIONS, channelOpts, FIXED_ANTIFLOOD, CHAT_BUFFER_SIZE };
