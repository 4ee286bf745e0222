/* placeholder: being written (issue 17) */
