// Command estkit takes raw pretraining corpora to a language model trained
// with Evolving Subnetwork Training. Each subcommand is one file here: flags
// in, library calls out.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}
