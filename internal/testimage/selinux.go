package testimage

// SELinuxType is the policy name images made with Options.SELinux give in
// /etc/selinux/config.
const SELinuxType = "targeted"

// SELinuxFileContexts is the file_contexts of images made with
// Options.SELinux: Fedora's targeted policy in miniature, covering every
// path of the test image. It is written in the order semodule writes real
// policies (a specification that names one path exactly is never followed
// by an expression that matches the same path), the order in which
// libselinux (matchpathcon) and composefs-rs agree. Some names get labels
// that split the image's hardlink groups: usr/sbin/ping-link (aliased to
// usr/bin, bin_t) from usr/bin/ping (ping_exec_t), and
// usr/share/helper-alias (usr_t) from usr/libexec/helper (helper_exec_t).
const SELinuxFileContexts = `# file_contexts of the cfs test image
/.*	system_u:object_r:default_t:s0
/[^/]+	--	system_u:object_r:etc_runtime_t:s0
/bin	-l	system_u:object_r:bin_t:s0
/boot(/.*)?	system_u:object_r:boot_t:s0
/dev(/.*)?	system_u:object_r:device_t:s0
/etc(/.*)?	system_u:object_r:etc_t:s0
/etc/localtime	-l	system_u:object_r:locale_t:s0
/etc/passwd[-\+]?	--	system_u:object_r:passwd_file_t:s0
/etc/group[-\+]?	--	system_u:object_r:passwd_file_t:s0
/etc/shadow.*	--	system_u:object_r:shadow_t:s0
/etc/selinux(/.*)?	system_u:object_r:selinux_config_t:s0
/etc/selinux/([^/]*/)?contexts(/.*)?	system_u:object_r:default_context_t:s0
/etc/selinux/([^/]*/)?contexts/files(/.*)?	system_u:object_r:file_context_t:s0
/lib	-l	system_u:object_r:lib_t:s0
/opt(/.*)?	system_u:object_r:usr_t:s0
/proc	-d	system_u:object_r:proc_t:s0
/proc/.*	<<none>>
/root(/.*)?	system_u:object_r:admin_home_t:s0
/run(/.*)?	system_u:object_r:var_run_t:s0
/sbin	-l	system_u:object_r:bin_t:s0
/sys	-d	system_u:object_r:sysfs_t:s0
/sys/.*	<<none>>
/sysroot(/.*)?	system_u:object_r:default_t:s0
/tmp	-d	system_u:object_r:tmp_t:s0
/tmp/.*	<<none>>
/usr(/.*)?	system_u:object_r:usr_t:s0
/usr/bin(/.*)?	system_u:object_r:bin_t:s0
/usr/bin/bash	--	system_u:object_r:shell_exec_t:s0
/usr/bin/ping	--	system_u:object_r:ping_exec_t:s0
/usr/bin/su	--	system_u:object_r:su_exec_t:s0
/usr/bin/sudo	--	system_u:object_r:sudo_exec_t:s0
/usr/lib(/.*)?	system_u:object_r:lib_t:s0
/usr/lib/lib[^/]*\.so(\.[^/]*)*	--	system_u:object_r:textrel_shlib_t:s0
/usr/lib/modules(/.*)?	system_u:object_r:modules_object_t:s0
/usr/lib/modules/[^/]+/vmlinuz	--	system_u:object_r:boot_t:s0
/usr/lib/os-release	--	system_u:object_r:etc_t:s0
/usr/libexec(/.*)?	system_u:object_r:bin_t:s0
/usr/libexec/helper	--	system_u:object_r:helper_exec_t:s0
/usr/share(/.*)?	system_u:object_r:usr_t:s0
/usr/share/empty	-d	system_u:object_r:empty_dir_t:s0
/usr/share/zoneinfo(/.*)?	system_u:object_r:locale_t:s0
/var(/.*)?	system_u:object_r:var_t:s0
/var/lib(/.*)?	system_u:object_r:var_lib_t:s0
/var/log(/.*)?	system_u:object_r:var_log_t:s0
/var/run	-l	system_u:object_r:var_run_t:s0
/var/tmp	-d	system_u:object_r:tmp_t:s0
/var/tmp/.*	<<none>>
`

// SELinuxSubsDist is the file_contexts.subs_dist of images made with
// Options.SELinux: /usr/sbin is labelled as /usr/bin, as on Fedora.
const SELinuxSubsDist = "/usr/sbin /usr/bin\n/var/run /run\n"

// selinuxPolicy adds /etc/selinux with the policy above.
func selinuxPolicy(b *builder) {
	b.dir("etc/selinux", 0o755)
	b.text("etc/selinux/config", 0o644, "# This file controls the state of SELinux on the system.\nSELINUX=enforcing\nSELINUXTYPE="+SELinuxType+"\n")
	files := "etc/selinux/" + SELinuxType + "/contexts/files"
	b.dir("etc/selinux/"+SELinuxType, 0o755)
	b.dir("etc/selinux/"+SELinuxType+"/contexts", 0o755)
	b.dir(files, 0o755)
	b.text(files+"/file_contexts", 0o644, SELinuxFileContexts)
	b.text(files+"/file_contexts.subs_dist", 0o644, SELinuxSubsDist)
}
