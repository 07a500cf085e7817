//! roomsense edge daemon (being written).
