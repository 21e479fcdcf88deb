package mesh

// HeaderRoomForTest is the room the gateway keeps for a call's headers.
const HeaderRoomForTest = headerRoom
