package erofs

// StatEveryEntry makes directory walks ignore the entry types getdents
// gives (see statEveryEntry).
var StatEveryEntry = &statEveryEntry
