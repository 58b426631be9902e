package cliutil

import (
	"fmt"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"
)

// ManSection is the manual section of every cfs tool: they administer a
// host's stores, as bootc(8) does.
const ManSection = 8

// manPageFlag is the hidden flag with which `make man` asks each binary for
// its page, so the page comes from the same definitions as --help.
const manPageFlag = "man-page"

// seeAlso names the other tools and the systems they work with.
var seeAlso = []string{"cfs-pull", "cfs-clone", "cfs-ostree-import", "cfs-status", "cfs-image", "cfs-fsck", "cfs-install", "cfs-upgrade"}

// ManPage renders app's man page (roff) from its definitions: usage,
// description, flags, subcommands and the exit statuses.
func ManPage(app *cli.App) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%% %s %d\n\n# NAME\n\n%s - %s\n\n", strings.ToUpper(app.Name), ManSection, app.Name, escapeMD(app.Usage))
	synopsis := app.UsageText
	if synopsis == "" {
		synopsis = app.Name + " [OPTIONS]"
		if len(app.VisibleCommands()) > 0 {
			synopsis += " COMMAND [COMMAND OPTIONS] [ARGUMENTS...]"
		}
	}
	// urfave/cli indents the lines after the first for --help.
	var syn []string
	for _, l := range strings.Split(strings.TrimSpace(synopsis), "\n") {
		syn = append(syn, strings.TrimSpace(l))
	}
	fmt.Fprintf(&b, "# SYNOPSIS\n\n```\n%s\n```\n\n", strings.Join(syn, "\n"))
	if app.Description != "" {
		// Descriptions are laid out for the terminal (examples indented by
		// two spaces, lists); keep that layout.
		fmt.Fprintf(&b, "# DESCRIPTION\n\n```\n%s\n```\n\n", strings.TrimSpace(app.Description))
	}
	if flags := app.VisibleFlags(); len(flags) > 0 {
		b.WriteString("# OPTIONS\n\n")
		writeFlags(&b, flags)
	}
	var cmds []*cli.Command
	for _, c := range app.VisibleCommands() {
		if c.Name != "help" {
			cmds = append(cmds, c)
		}
	}
	if len(cmds) > 0 {
		b.WriteString("# COMMANDS\n\n")
		for _, c := range cmds {
			fmt.Fprintf(&b, "## %s\n\n", c.Name)
			fmt.Fprintf(&b, "```\n%s %s %s\n```\n\n", app.Name, c.Name, commandArgs(c))
			if c.Usage != "" {
				fmt.Fprintf(&b, "%s\n\n", escapeMD(c.Usage))
			}
			if c.Description != "" {
				fmt.Fprintf(&b, "```\n%s\n```\n\n", strings.TrimSpace(c.Description))
			}
			writeFlags(&b, c.VisibleFlags())
		}
	}
	b.WriteString("# EXIT STATUS\n\n")
	for _, e := range ExitCodes {
		fmt.Fprintf(&b, "**%d**\n: %s\n\n", e.Code, escapeMD(e.Meaning))
	}
	b.WriteString("# SEE ALSO\n\n")
	var refs []string
	for _, t := range seeAlso {
		if t != app.Name {
			refs = append(refs, fmt.Sprintf("**%s**(%d)", t, ManSection))
		}
	}
	refs = append(refs, "**bootc**(8)", "**ostree**(1)")
	b.WriteString(strings.Join(refs, ", ") + "\n")
	return string(md2man.Render([]byte(b.String()))), nil
}

func commandArgs(c *cli.Command) string {
	if c.UsageText != "" {
		return c.UsageText
	}
	s := "[OPTIONS]"
	if c.ArgsUsage != "" {
		s += " " + c.ArgsUsage
	}
	return s
}

func writeFlags(b *strings.Builder, flags []cli.Flag) {
	for _, f := range flags {
		if f.Names()[0] == "help" {
			continue
		}
		var names []string
		for _, n := range f.Names() {
			if len(n) == 1 {
				names = append(names, "-"+n)
			} else {
				names = append(names, "--"+n)
			}
		}
		usage, placeholder, def := "", "", ""
		if d, ok := f.(cli.DocGenerationFlag); ok {
			usage, placeholder = unquote(d.GetUsage())
			if d.TakesValue() {
				if placeholder == "" {
					placeholder = "VALUE"
				}
				def = d.GetDefaultText()
				if def == "" {
					def = d.GetValue()
				}
			}
		}
		term := "**" + strings.Join(names, "**, **") + "**"
		if placeholder != "" {
			term += "=*" + escapeMD(placeholder) + "*"
		}
		def = strings.Trim(def, `"`)
		if def != "" && def != "0" {
			usage += fmt.Sprintf(" (default: %s)", def)
		}
		fmt.Fprintf(b, "%s\n: %s\n\n", term, escapeMD(usage))
	}
}

// unquote takes the `NAME` placeholder out of a flag's usage, as --help
// shows it.
func unquote(usage string) (text, name string) {
	i := strings.IndexByte(usage, '`')
	if i < 0 {
		return usage, ""
	}
	j := strings.IndexByte(usage[i+1:], '`')
	if j < 0 {
		return usage, ""
	}
	name = usage[i+1 : i+1+j]
	return usage[:i] + name + usage[i+1+j+1:], name
}

var mdEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "<", `\<`, ">", `\>`, "`", "\\`", "[", `\[`, "]", `\]`, "#", `\#`)

func escapeMD(s string) string { return mdEscaper.Replace(s) }

// TextManPage renders the man page of a command whose definitions are not
// urfave/cli's (the shell drivers) from its --help text: the "Usage:"
// lines become the SYNOPSIS, the rest the DESCRIPTION, laid out as --help
// lays it out. summary is the NAME line's description.
func TextManPage(name, summary, help string) string {
	var synopsis, desc []string
	lines := strings.Split(strings.TrimRight(help, "\n"), "\n")
	i := 0
	for ; i < len(lines); i++ {
		l := lines[i]
		if i == 0 {
			l = strings.TrimPrefix(l, "Usage: ")
		} else if strings.TrimSpace(l) == "" || !strings.HasPrefix(l, " ") {
			break
		}
		synopsis = append(synopsis, l)
	}
	desc = lines[i:]
	var b strings.Builder
	fmt.Fprintf(&b, "%% %s %d\n\n# NAME\n\n%s - %s\n\n", strings.ToUpper(name), ManSection, name, escapeMD(summary))
	fmt.Fprintf(&b, "# SYNOPSIS\n\n```\n%s\n```\n\n", strings.Join(synopsis, "\n"))
	if d := strings.Trim(strings.Join(desc, "\n"), "\n"); d != "" {
		fmt.Fprintf(&b, "# DESCRIPTION\n\n```\n%s\n```\n\n", d)
	}
	b.WriteString("# SEE ALSO\n\n")
	var refs []string
	for _, t := range seeAlso {
		if t != name {
			refs = append(refs, fmt.Sprintf("**%s**(%d)", t, ManSection))
		}
	}
	refs = append(refs, "**bootc**(8)", "**ostree**(1)")
	b.WriteString(strings.Join(refs, ", ") + "\n")
	return string(md2man.Render([]byte(b.String())))
}
