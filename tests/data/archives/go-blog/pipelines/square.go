package main

import "fmt" // OMIT

func gen(nums ...int) <-chan int {
	out := make(chan int)
	go func() { // HL
		for _, n := range nums {
			out <- n
		}
		close(out)
	}()
	return out
}

func main() {
	fmt.Println("done")
}
