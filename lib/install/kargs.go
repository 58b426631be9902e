package install

import "github.com/cfs-project/cfs/lib/kargsd"

// The image's kargs.d is read by lib/kargsd, which native upgrades use
// too; these are its names here.
const KargsDir = kargsd.Dir

// KargsFile is one file of KargsDir.
type KargsFile = kargsd.File

// ParseKargsD is kargsd.Parse.
func ParseKargsD(files []KargsFile) ([]string, error) { return kargsd.Parse(files) }

// RustArch is kargsd.RustArch.
func RustArch() string { return kargsd.RustArch() }

// SplitCmdline is kargsd.SplitCmdline.
func SplitCmdline(s string) []string { return kargsd.SplitCmdline(s) }
